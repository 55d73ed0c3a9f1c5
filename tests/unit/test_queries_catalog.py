"""Every named query: a complete header, declared columns equal to what it returns, docs in sync."""

from __future__ import annotations

import pytest
from golden.tapes import write_tape

import nodetape
from nodetape.core.errors import QueryError
from nodetape.queries import catalog, get, parse_query
from nodetape.queries.docs import DOC_PATH, render_markdown

NAMES = sorted(catalog())


def test_the_issue_queries_exist():
    assert {"pod_births", "throttle_timeline", "psi_timeline", "syscall_profile", "process_tree",
            "memory_events", "packet_drops_by_location", "cgroup_tree"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_header_is_complete(name):
    q = get(name)
    assert q.description and q.columns, name
    # the contract's per-pod queries (pod_startup, pod_stuck) lead with host, the others end with it
    assert "host" in (q.columns[0], q.columns[-1]) or name == "tables_overview", "multi-tape queries have host at an end"
    for p in q.params.values():
        assert p.doc, f"{name}: parameter {p.name} has no doc"
        assert f"${p.name}" in q.sql, f"{name}: parameter {p.name} is never used"


@pytest.mark.parametrize("name", NAMES)
def test_declared_columns_are_the_output_columns_even_on_an_empty_tape(tmp_path, name):
    tape = write_tape(tmp_path / "t", {})
    out = nodetape.open(tape).query(name)
    assert out.column_names == get(name).columns
    assert out.num_rows == 0 or name == "tables_overview"


def test_contract_columns():
    assert get("pod_births").columns[:7] == ["pod_uid", "container_id", "cgroup_path", "stage", "ts", "offset_ms", "detail"]
    assert get("throttle_timeline").columns[:12] == [
        "cgroup_path", "pod_uid", "container_id", "window_start", "window_end", "nr_periods", "nr_throttled",
        "throttle_pct", "throttled_ms", "cpu_usage_ms", "quota_cores", "psi_cpu_some_avg10"]
    assert get("throttle_timeline").params["window"].default == "1s"


def test_parameters_are_bound_not_pasted(tmp_path):
    tape = write_tape(tmp_path / "t", {"cgroup_samples": {
        "ts_ns": [1, 2], "hierarchy": ["cpu"] * 2, "cgroup_path": ["/a'b"] * 2, "nr_periods": [1, 2]}})
    # a quote in a value is data, not SQL
    rows = nodetape.open(tape).query("throttle_timeline", path="/a'b").to_pylist()
    assert len(rows) <= 1 and all(r["cgroup_path"] == "/a'b" for r in rows)
    with pytest.raises(QueryError, match="not a duration"):
        nodetape.open(tape).query("throttle_timeline", window="soon")
    with pytest.raises(QueryError, match="unknown --param nope"):
        nodetape.open(tape).query("throttle_timeline", nope="1")


def test_header_notes_are_kept_for_the_docs():
    q = parse_query("-- name: x\n-- description: d\n-- columns: a\n--\n-- why it works\nSELECT 1 AS a", "f")
    assert (q.name, q.notes) == ("x", "why it works")


def test_docs_queries_md_is_up_to_date():
    assert DOC_PATH.read_text() == render_markdown(), "run: python -m nodetape.queries.docs --write"
