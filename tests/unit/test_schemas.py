"""Schemas are the contract: 14 tables, every field documented, docs generated and current."""

import pyarrow as pa
import pytest

from nodetape import schemas
from nodetape.schemas.docs import DOC_PATH, render_markdown

CONTRACT_TABLES = {
    "cgroup_events", "cgroup_samples", "psi_samples", "psi_events", "processes", "namespaces",
    "syscall_counts", "syscall_latency", "file_opens", "packet_drops", "mounts", "net_interfaces",
    "recorder_stats", "containers",
}
# key columns named by DESIGN.md, table by table
CONTRACT_COLUMNS = {
    "cgroup_events": "ts_ns seq source kind hierarchy cgroup_path cgroup_id pid pod_uid container_id qos_class runtime",
    "cgroup_samples": "ts_ns hierarchy cgroup_path cgroup_id cpu_usage_usec nr_periods nr_throttled throttled_usec "
                      "cpu_quota_usec cpu_period_usec memory_current memory_max pids_current nr_procs",
    "psi_samples": "ts_ns scope resource some_avg10 some_avg60 some_avg300 some_total_usec full_avg10 full_avg60 "
                   "full_avg300 full_total_usec",
    "psi_events": "ts_ns scope resource kind stall_usec window_usec",
    "processes": "ts_ns seq source event pid tgid ppid comm filename exit_code cgroup_id",
    "namespaces": "ts_ns pid ns_type ns_inode",
    "syscall_counts": "interval_start_ns interval_end_ns cgroup_id syscall_nr syscall_name count",
    "syscall_latency": "interval_start_ns interval_end_ns cgroup_id syscall_nr bucket_ns count",
    "file_opens": "ts_ns pid tgid cgroup_id comm path flags ret",
    "packet_drops": "ts_ns location reason protocol ifindex",
    "mounts": "ts_ns mount_id mountpoint fstype source options",
    "net_interfaces": "ts_ns ifname ifindex operstate mtu rx_bytes tx_bytes rx_dropped tx_dropped",
    "recorder_stats": "ts_ns source events dropped lag_ns recorder_cpu_usec recorder_rss_bytes",
    "containers": "ts_ns seq source container_id container_type pod_uid pod_name pod_namespace container_name image "
                  "sandbox_id runtime cgroup_path",
}


def test_all_contract_tables_declared():
    assert set(schemas.TABLE_NAMES) == CONTRACT_TABLES


@pytest.mark.parametrize("name", sorted(CONTRACT_COLUMNS))
def test_contract_columns_present(name):
    assert set(CONTRACT_COLUMNS[name].split()) <= set(schemas.table(name).column_names)


@pytest.mark.parametrize("name", sorted(CONTRACT_TABLES))
def test_every_field_has_unit_and_meaning(name):
    for f in schemas.schema(name):
        assert f.metadata[b"unit"], f"{name}.{f.name} has no unit"
        assert len(f.metadata[b"doc"]) > 10, f"{name}.{f.name} has no meaning"
    t = schemas.table(name)
    assert t.time_column in t.column_names


def test_schema_docs_are_current():
    assert DOC_PATH.read_text() == render_markdown(), "docs/schema.md is stale: python -m nodetape.schemas.docs --write"


def test_batch_fills_nulls_and_seq():
    b = schemas.batch("psi_events", {"ts_ns": [5, 6], "scope": ["system"] * 2, "resource": ["cpu"] * 2,
                                     "kind": ["some"] * 2, "stall_usec": [1, 1], "window_usec": [2, 2]})
    assert b.column("seq").to_pylist() == [0, 1]
    assert b.column("total_usec").null_count == 2
    assert b.schema == schemas.schema("psi_events")


def test_batch_rejects_unknown_and_missing_required():
    with pytest.raises(KeyError):
        schemas.batch("namespaces", {"ts_ns": [1], "pid": [1], "ns_type": ["net"], "ns_inode": [1], "typo": [1]})
    with pytest.raises(ValueError):
        schemas.batch("namespaces", {"ts_ns": [1], "pid": [1], "ns_type": ["net"]})


def test_batch_accepts_numpy_and_arrow():
    import numpy as np

    b = schemas.batch("syscall_counts", {
        "interval_start_ns": np.array([1, 1], dtype=np.int64), "interval_end_ns": pa.array([2, 2], pa.int64()),
        "cgroup_id": np.array([7, 8], dtype=np.uint64), "syscall_nr": np.array([39, 110], dtype=np.int32),
        "count": [3, 4],
    })
    assert b.num_rows == 2 and b.column("syscall_name").null_count == 2


def test_a_name_that_is_not_utf8_is_spelled_out_not_an_error():
    # cgroup names come from the kernel as bytes, decoded with surrogateescape so they stay openable
    raw = b"/odd\xff name".decode("utf-8", "surrogateescape")
    b = schemas.batch("cgroup_events", {"ts_ns": [1, 2], "kind": ["created"] * 2, "hierarchy": ["unified"] * 2,
                                        "cgroup_path": [raw, "/ünïcode name"], "source": ["inotify"] * 2})
    assert b.column("cgroup_path").to_pylist() == ["/odd\\xff name", "/ünïcode name"]
