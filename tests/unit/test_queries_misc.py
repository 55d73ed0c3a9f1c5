"""psi_timeline, syscall_profile, process_tree, memory_events, packet_drops_by_location,
cgroup_tree on hand-written rows (test inputs for the SQL, not recordings)."""

from __future__ import annotations

import pytest
from golden.tapes import MS, S, write_tape

import nodetape
from nodetape.core.errors import QueryError

POD = "1b2c3d4e-0000-4000-8000-00000000abcd"
CPATH = f"/kubepods/pod{POD}/" + "c" * 64


@pytest.fixture(scope="module")
def tape(tmp_path_factory):
    d = tmp_path_factory.mktemp("q")
    return write_tape(d / "t", {
        "cgroup_events": {
            "ts_ns": [1 * S, 1 * S, 2 * S, 3 * S, 4 * S, 3 * S + 500 * MS, 5 * S],
            "kind": ["seen", "seen", "created", "populated", "removed", "oom_kill", "created"],
            "hierarchy": ["unified"] * 5 + ["memory", "memory"],
            "cgroup_path": ["/", "/a", CPATH, CPATH, CPATH, CPATH, "/late"],
            "cgroup_id": [1, 2, 3, 3, 3, 33, 40], "source": ["scan", "scan", "inotify", "inotify", "inotify", "inotify", "inotify"],
            "count": [None, None, None, None, None, 1, None],
            "pod_uid": [None, None, POD, POD, POD, POD, None],
            "container_id": [None, None, "c" * 64, "c" * 64, "c" * 64, "c" * 64, None],
        },
        "processes": {
            "ts_ns": [1 * S, 2 * S, 2 * S + 1, 3 * S, 4 * S],
            "source": ["proc", "ebpf", "ebpf", "ebpf", "ebpf"],
            "event": ["seen", "fork", "fork", "exec", "exit"],
            "pid": [10, 11, 12, 11, 11], "tgid": [10, 11, 11, 11, 11],  # pid 12 is a thread of 11
            "ppid": [1, 10, 11, None, None], "parent_tgid": [None, 10, 11, None, None],
            "comm": ["sh", "sh", "sh", "sleep", "sleep"], "filename": ["sh", None, None, "/bin/sleep", None],
            "exit_code": [None, None, None, None, 9], "cgroup_id": [None, 3, 3, 3, 3],
            "cgroup_path": ["/a", None, None, None, None],
        },
        "cgroup_samples": {
            "ts_ns": [3 * S, 3 * S + 200 * MS], "hierarchy": ["memory", "memory"], "cgroup_path": [CPATH, CPATH],
            "cgroup_id": [33, 33], "memory_current": [900, 1000], "memory_max": [1024, 1024], "nr_procs": [1, 1],
        },
        "psi_samples": {
            "ts_ns": [1 * S, 2 * S, 3 * S, 3 * S + 500 * MS], "scope": ["system"] * 3 + [CPATH],
            "resource": ["cpu"] * 3 + ["memory"], "some_total_usec": [0, 100_000, 50_000, 7],
            "some_avg10": [1.0, 2.0, 3.0, 4.0],
        },
        "psi_events": {"ts_ns": [2 * S + 1], "scope": ["system"], "resource": ["cpu"], "kind": ["some"],
                       "stall_usec": [100_000], "window_usec": [1_000_000]},
        "syscall_counts": {
            "interval_start_ns": [0, 0, 0, 0], "interval_end_ns": [S, S, S, S], "cgroup_id": [3, 3, 3, 99],
            "syscall_nr": [0, 1, 2, 0], "syscall_name": ["read", "write", None, "read"], "count": [5, 10, 1, 4],
        },
        "packet_drops": {"ts_ns": [1, 2, 3], "location": ["tcp_v4_rcv+0x1"] * 2 + ["ip_rcv+0x9"],
                         "reason": ["NO_SOCKET"] * 3, "protocol": [2048, 2048, 34525], "ifindex": [2, None, 2]},
        "net_interfaces": {"ts_ns": [0], "event": ["snapshot"], "ifname": ["eth0"], "ifindex": [2]},
    })


def q(tape, name, **params):
    return nodetape.open(tape).query(name, **{k: str(v) for k, v in params.items()}).to_pylist()


def test_psi_timeline_derives_stall_share_from_totals_with_resets(tape):
    rows = q(tape, "psi_timeline", scope="system")
    assert [(r["window_start"].second, r["some_pct"], r["some_stall_ms"], r["trigger_firings"]) for r in rows] == [
        (1, None, None, 0), (2, 10.0, 100.0, 1), (3, 5.0, 50.0, 0)]  # 3 s: the total went down, a reset


def test_syscall_profile_top_n_with_names_from_the_unified_id(tape):
    rows = q(tape, "syscall_profile", top=2)
    mine = [r for r in rows if r["cgroup_id"] == 3]
    assert [(r["rank"], r["syscall_name"], r["count"], r["share_pct"]) for r in mine] == [
        (1, "write", 10, 62.5), (2, "read", 5, 31.25)]
    assert mine[0]["pod_uid"] == POD and mine[0]["cgroup_path"] == CPATH
    unknown = [r for r in rows if r["cgroup_id"] == 99]
    assert unknown[0]["cgroup_path"] is None
    assert len(q(tape, "syscall_profile")) == 4  # '#2' for the unnamed syscall
    assert any(r["syscall_name"] == "#2" for r in q(tape, "syscall_profile"))


def test_process_tree_folds_threads_and_decodes_exit(tape):
    rows = q(tape, "process_tree")
    assert [(r["pid"], r["depth"], r["tree"]) for r in rows] == [(10, 0, "sh"), (11, 1, "  sleep")]
    child = rows[1]
    assert (child["filename"], child["exit_code"], child["exit_signal"]) == ("/bin/sleep", 0, 9)
    assert (child["cgroup_path"], child["pod_uid"]) == (CPATH, POD)
    assert [r["pid"] for r in q(tape, "process_tree", root=11)] == [11]


def test_memory_events_with_the_sample_just_before(tape):
    (r,) = q(tape, "memory_events")
    assert (r["kind"], r["count"], r["memory_before"], r["memory_max"], r["sample_age_ms"]) == ("oom_kill", 1, 1000, 1024, 300.0)


def test_packet_drops_by_location(tape):
    rows = q(tape, "packet_drops_by_location")
    assert [(r["location"], r["protocol"], r["interfaces"], r["drops"]) for r in rows] == [
        ("tcp_v4_rcv+0x1", "ipv4", "eth0", 2), ("ip_rcv+0x9", "ipv6", "eth0", 1)]
    assert len(q(tape, "packet_drops_by_location", top=1)) == 1


def test_cgroup_tree_at_moments(tape):
    def paths(**p):
        return [(r["hierarchy"], r["cgroup_path"]) for r in q(tape, "cgroup_tree", hierarchy="unified", **p)]
    assert paths(at="start") == [("unified", "/"), ("unified", "/a")]
    assert paths(at="+1500ms") == [("unified", "/"), ("unified", "/a"), ("unified", CPATH)]
    assert paths() == [("unified", "/"), ("unified", "/a")]  # removed by the end
    (c,) = [r for r in q(tape, "cgroup_tree", at="+2500ms") if r["cgroup_path"] == CPATH]
    assert (c["populated"], c["depth"], c["tree"].strip()) == (True, 3, "c" * 64)
    iso = q(tape, "cgroup_tree", at="2024-01-01T00:00:02.5", hierarchy="unified")
    assert CPATH in [r["cgroup_path"] for r in iso]
    with pytest.raises(QueryError, match="bad --param at=bogus"):
        q(tape, "cgroup_tree", at="bogus")
