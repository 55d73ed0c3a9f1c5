"""Replay merge: order, determinism, filters, multi-tape, unsorted parts (TapeWriter-made tapes)."""

from __future__ import annotations

import io
import json

import pytest

from nodetape import replay
from nodetape.core.errors import UserError
from nodetape.replay.command import run_replay
from nodetape.schemas import TABLE_NAMES, table

from replay_util import BOOT0, OFFSET, cg_event, make_tape, rows

S = 1_000_000_000
POD = "0b1c2d3e-1111-2222-3333-444455556666"
CID = "a" * 64
CPATH = f"/kubepods/burstable/pod{POD}/{CID}"


def incident(path, offset_ns=OFFSET, hostname="node-a"):
    """Three flushes; the second holds a cgroup_events part whose rows are out of time order."""
    t = BOOT0
    return make_tape(path, [
        [
            ("cgroup_events", rows([cg_event(t + 1 * S, "seen", "/kubepods", cgroup_id=10),
                                    cg_event(t + 2 * S, "created", f"/kubepods/burstable/pod{POD}", cgroup_id=11, pod_uid=POD),
                                    cg_event(t + 2 * S, "created", f"/kubepods/burstable/pod{POD}", hierarchy="cpu", cgroup_id=91, pod_uid=POD)])),
            ("cgroup_samples", {"ts_ns": [t + 2 * S, t + 2 * S], "hierarchy": ["cpu", "cpu"],
                                "cgroup_path": ["/kubepods", f"/kubepods/burstable/pod{POD}"], "cgroup_id": [90, 91],
                                "cpu_usage_usec": [100, 5], "nr_periods": [10, 1], "nr_throttled": [0, 0],
                                "throttled_usec": [0, 0], "cpu_quota_usec": [None, 50000], "cpu_period_usec": [100000, 100000],
                                "memory_current": [4096, 1024], "memory_max": [None, 1 << 30], "pids_current": [3, 1],
                                "nr_procs": [2, 1], "pod_uid": [None, POD]}),
            ("mounts", {"ts_ns": [t], "event": ["snapshot"], "mount_id": [1], "mountpoint": ["/"]}),
        ],
        [
            # two sources wrote this part: the eBPF row reached the writer after a later inotify row
            ("cgroup_events", rows([cg_event(t + 4 * S, "created", CPATH, cgroup_id=12, pod_uid=POD, container_id=CID),
                                    cg_event(t + 3 * S, "attach", f"/kubepods/burstable/pod{POD}", cgroup_id=11, pid=4242, pod_uid=POD)])),
            ("syscall_counts", {"interval_start_ns": [t + 2 * S, t + 2 * S], "interval_end_ns": [t + 4 * S, t + 4 * S],
                                "cgroup_id": [12, 77], "syscall_nr": [0, 1], "syscall_name": ["read", "write"], "count": [5, 6]}),
            ("psi_samples", {"ts_ns": [t + 4 * S, t + 4 * S], "scope": ["system", CPATH], "resource": ["cpu", "cpu"],
                             "some_avg10": [1.5, 0.25], "some_avg60": [0.1, 0.0], "some_avg300": [0.0, 0.0],
                             "some_total_usec": [123, 45], "full_avg10": [None, 0.0], "full_avg60": [None, 0.0],
                             "full_avg300": [None, 0.0], "full_total_usec": [None, 0]}),
        ],
        [
            ("cgroup_events", rows([cg_event(t + 6 * S, "removed", CPATH, cgroup_id=12, pod_uid=POD, container_id=CID),
                                    cg_event(t + 7 * S, "removed", f"/kubepods/burstable/pod{POD}", cgroup_id=11, pod_uid=POD)])),
            ("recorder_stats", {"ts_ns": [t + 7 * S], "source": ["recorder"], "events": [9]}),
        ],
    ], offset_ns=offset_ns, hostname=hostname)


@pytest.fixture
def tape(tmp_path):
    return incident(tmp_path / "tape")


def jsonl_of(paths, **kw) -> str:
    buf = io.StringIO()
    code = run_replay(tapes=[str(p) for p in paths] if isinstance(paths, list) else [str(paths)],
                      max_speed=True, stdout=buf, **kw)
    assert code == 0
    return buf.getvalue()


def _key(line: dict, host_order=None):
    t = table(line["table"])
    return line[t.time_column], TABLE_NAMES.index(line["table"]), line.get("seq", -1)


def test_replaying_twice_gives_identical_bytes(tape):
    a, b = jsonl_of(tape), jsonl_of(tape)
    assert a == b
    assert a.endswith("\n") and a.count("\n") == 15


def test_events_never_go_back_in_time_and_ties_follow_table_order_then_seq(tape):
    lines = [json.loads(x) for x in jsonl_of(tape).splitlines()]
    keys = [_key(x) for x in lines]
    assert keys == sorted(keys)
    # the out-of-order part is re-sorted: attach (t+3s) before the container's creation (t+4s)
    kinds = [(x["kind"], x["cgroup_path"]) for x in lines if x["table"] == "cgroup_events"]
    assert kinds[3] == ("attach", f"/kubepods/burstable/pod{POD}")
    assert kinds[4] == ("created", CPATH)
    # at t+4s: cgroup_events, then psi_samples, then syscall_counts (TABLES order)
    at4 = [x["table"] for x in lines if _key(x)[0] == BOOT0 + 4 * S]
    assert at4 == ["cgroup_events", "psi_samples", "psi_samples", "syscall_counts", "syscall_counts"]


def test_line_format_is_schema_order_with_integer_times(tape):
    first = jsonl_of(tape).splitlines()[0]
    assert first.startswith('{"table":"mounts","ts_ns":1000000000000,"event":"snapshot","mount_id":1,')
    ev = json.loads(first)
    assert list(ev) == ["table", *table("mounts").column_names]
    psi = [json.loads(x) for x in jsonl_of(tape, tables="psi_samples").splitlines()]
    assert psi[0]["some_avg10"] == 1.5 and psi[0]["full_avg10"] is None


def test_python_api_events(tape):
    evs = list(replay.open(tape).events(tables=["cgroup_events"]))
    assert [e.table for e in evs] == ["cgroup_events"] * 7
    assert evs[0].time_ns == BOOT0 + S and evs[0].row["kind"] == "seen" and evs[0].host is None
    assert list(evs[0].row) == table("cgroup_events").column_names


def test_window_relative_absolute_and_iso(tape):
    rp = replay.open(tape)
    rel = [e.time_ns for e in rp.events(from_="+2s", to="+4s")]
    assert rel and min(rel) == BOOT0 + 2 * S and max(rel) < BOOT0 + 4 * S
    absolute = [e.time_ns for e in rp.events(from_=BOOT0 + 2 * S, to=str(BOOT0 + 4 * S))]
    assert absolute == rel
    import datetime as dt
    iso = dt.datetime.fromtimestamp((BOOT0 + 2 * S + OFFSET) / 1e9, dt.timezone.utc).isoformat()
    assert [e.time_ns for e in rp.events(from_=iso, to="+4s")] == rel
    with pytest.raises(UserError, match="--from"):
        list(rp.events(from_="yesterday"))
    with pytest.raises(UserError, match="empty"):
        list(rp.events(from_="+5s", to="+1s"))


def test_filters_cgroup_glob_pod_and_tables(tape):
    rp = replay.open(tape)
    got = [(e.table, e.row.get("cgroup_path") or e.row.get("scope") or e.row.get("cgroup_id"))
           for e in rp.events(cgroup=f"/kubepods/burstable/pod{POD}/*")]
    # the container's lifecycle, its PSI scope, and its syscall row found through cgroup_id 12
    assert got == [("cgroup_events", CPATH), ("psi_samples", CPATH), ("syscall_counts", 12), ("cgroup_events", CPATH)]
    pod = list(rp.events(pod=POD))
    assert {e.table for e in pod} == {"cgroup_events", "cgroup_samples", "psi_samples", "syscall_counts"}
    assert all(e.row.get("pod_uid") in (POD, None) for e in pod)
    assert not any(e.row.get("cgroup_path") == "/kubepods" for e in pod)
    assert list(rp.events(pod="nope")) == []
    # as a user may paste it: upper case, or the systemd driver's '_' form
    assert len(list(rp.events(pod=POD.upper()))) == len(list(rp.events(pod=POD.replace("-", "_")))) == len(pod)
    assert {e.table for e in rp.events(tables="mounts,recorder_stats")} == {"mounts", "recorder_stats"}
    with pytest.raises(UserError, match="unknown table"):
        list(rp.events(tables="nope"))


def test_several_tapes_merge_on_wall_time_with_host(tmp_path):
    a = incident(tmp_path / "a")
    # node b booted 10 s later: the same wall time is 10 s less of its boottime
    b = incident(tmp_path / "b", offset_ns=OFFSET + 10 * S, hostname="node-b")
    lines = [json.loads(x) for x in jsonl_of([a, b]).splitlines()]
    assert len(lines) == 30 and list(lines[0])[:2] == ["table", "host"]
    wall = [x[table(x["table"]).time_column] + (OFFSET if x["host"] == "node-a" else OFFSET + 10 * S) for x in lines]
    assert wall == sorted(wall)
    assert jsonl_of([a, b]) == jsonl_of([a, b])


def test_check_matches_and_reports_first_difference(tape, tmp_path):
    expected = tmp_path / "expected.jsonl"
    expected.write_text(jsonl_of(tape))
    out = io.StringIO()
    assert run_replay(tapes=[str(tape)], check=expected, stdout=out) == 0
    assert out.getvalue() == ""
    lines = expected.read_text().splitlines(keepends=True)
    lines[3] = lines[3].replace('"kind":"created"', '"kind":"removed"')
    expected.write_text("".join(lines))
    out = io.StringIO()
    assert run_replay(tapes=[str(tape)], check=expected, stdout=out) == 1
    msg = out.getvalue()
    assert "event 4" in msg and '- expected: {"table":"cgroup_events"' in msg and '"kind":"removed"' in msg
    assert '+ replayed: {"table":"cgroup_events"' in msg
    # a shorter stream than expected is a difference too
    expected.write_text(jsonl_of(tape) + '{"table":"extra"}\n')
    out = io.StringIO()
    assert run_replay(tapes=[str(tape)], check=expected, stdout=out) == 1
    assert "<end of stream>" in out.getvalue()


def test_output_file(tape, tmp_path):
    out = tmp_path / "ev.jsonl"
    assert run_replay(tapes=[str(tape)], output=out, max_speed=True, stdout=io.StringIO()) == 0
    assert out.read_text() == jsonl_of(tape)
