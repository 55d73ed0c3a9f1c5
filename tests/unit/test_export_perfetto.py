"""`nodetape export --perfetto`: decode the written trace with the perfetto package's own
protos and check its tracks, slices and counters against the tape's rows, for every
fixture tape."""

from __future__ import annotations

import collections
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from nodetape import api
from nodetape.cli import run

pb = pytest.importorskip("perfetto.protos.perfetto.trace.perfetto_trace_pb2")

REPO = Path(__file__).resolve().parents[2]
TAPES = sorted(p for p in (REPO / "fixtures" / "tapes").iterdir() if (p / "manifest.json").is_file())
BOOTTIME = 6


def _decode(path: Path):
    trace = pb.Trace()
    trace.ParseFromString(path.read_bytes())
    return trace


class Decoded:
    def __init__(self, trace):
        self.clock = [p.clock_snapshot for p in trace.packet if p.HasField("clock_snapshot")]
        self.tracks = {p.track_descriptor.uuid: p.track_descriptor for p in trace.packet
                       if p.HasField("track_descriptor")}
        self.events = [p for p in trace.packet if p.HasField("track_event")]

    def name(self, uuid) -> str:
        return self.tracks[uuid].name

    def on(self, pred):
        return [p for p in self.events if pred(self.tracks[p.track_event.track_uuid])]


def _boot_ns(wall, manifest) -> int:
    """The wall TIMESTAMP of a view, back to CLOCK_BOOTTIME, with the tape's one clock pair."""
    us = (wall.replace(tzinfo=timezone.utc) - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)
    return us * 1000 - manifest["clock"]["offset_ns"]


@pytest.fixture(scope="module", params=TAPES, ids=[t.name for t in TAPES])
def exported(request, tmp_path_factory):
    tape = request.param
    out = tmp_path_factory.mktemp("pf") / "tape.pftrace"
    assert run(["export", str(tape), "--perfetto", str(out)]) == 0
    manifest = json.loads((tape / "manifest.json").read_text())
    return tape, manifest, Decoded(_decode(out))


def test_fixture_tapes_exist():
    assert len(TAPES) >= 4


def test_clock_is_boottime_with_the_manifests_wall_pair(exported):
    tape, manifest, d = exported
    assert d.clock, "no ClockSnapshot"
    snap = d.clock[0]
    assert snap.primary_trace_clock == BOOTTIME
    clocks = {c.clock_id: c.timestamp for c in snap.clocks}
    boot, real = manifest["clock"]["snapshots"][0]
    assert clocks == {BOOTTIME: boot, 1: real}
    assert all(p.timestamp_clock_id == BOOTTIME for p in d.events)
    # every event's track is described
    assert {p.track_event.track_uuid for p in d.events} <= set(d.tracks)


def test_birth_slices_are_the_pod_births_rows(exported):
    tape, manifest, d = exported
    births = api.open(tape).query("pod_births").to_pylist()
    T = pb.TrackEvent.Type
    on_birth = d.on(lambda t: t.name == "birth")
    starts = [p for p in on_birth if p.track_event.type in (T.TYPE_SLICE_BEGIN, T.TYPE_INSTANT)]
    ends = [p for p in on_birth if p.track_event.type == T.TYPE_SLICE_END]
    assert len(starts) == len(births)
    assert len(ends) == len(starts) - len({(r["pod_uid"], r["container_id"]) for r in births})
    got = collections.Counter((p.track_event.name, p.timestamp) for p in starts)
    want = collections.Counter((r["stage"], _boot_ns(r["ts"], manifest)) for r in births)
    assert got == want
    # one birth track per container, under its container group, under its pod group
    pods = {r.get("pod_name") or r["pod_uid"] for r in births}  # a CRI pod is shown by its name
    birth_tracks = {t.uuid: t for t in d.tracks.values() if t.name == "birth"}
    assert len(birth_tracks) == len({(r["pod_uid"], r["container_id"]) for r in births})
    for t in birth_tracks.values():
        group = d.tracks[t.parent_uuid]
        pod = d.tracks[group.parent_uuid]
        assert pod.name.removeprefix("pod ") in pods


def _counter_values(d: Decoded, name: str) -> list[float]:
    return sorted(p.track_event.double_counter_value for p in d.on(lambda t: t.HasField("counter") and t.name == name))


def test_counters_are_the_queries_values(exported):
    tape, manifest, d = exported
    tt = api.open(tape).query("throttle_timeline", window="1s").to_pylist()
    assert tt
    for col, name, scale in (("throttle_pct", "throttled %", 1), ("cpu_usage_ms", "CPU used (cores)", 1e-3),
                             ("quota_cores", "quota (cores)", 1)):
        want = sorted(float(r[col]) * scale for r in tt if r[col] is not None)
        assert _counter_values(d, name) == pytest.approx(want), name
    mem = api.open(tape).sql("SELECT memory_current FROM cgroup_samples WHERE memory_current IS NOT NULL").column(0)
    got = sorted(p.track_event.double_counter_value
                 for p in d.on(lambda t: t.HasField("counter") and t.name.startswith("memory.current")))
    assert got == sorted(float(v) for v in mem.to_pylist())
    psi = api.open(tape).sql("SELECT resource, some_avg10, full_avg10 FROM psi_samples").to_pylist()
    for res in {r["resource"] for r in psi}:
        for kind in ("some", "full"):
            want = sorted(r[f"{kind}_avg10"] for r in psi if r["resource"] == res and r[f"{kind}_avg10"] is not None)
            assert _counter_values(d, f"PSI {res} {kind} avg10 %") == pytest.approx(want)
    # counter timestamps: memory points at the rows' own ts_ns
    ts = api.open(tape).sql("SELECT ts_ns FROM cgroup_samples WHERE memory_current IS NOT NULL").column(0).to_pylist()
    got_ts = sorted(p.timestamp for p in d.on(lambda t: t.HasField("counter") and t.name.startswith("memory.current")))
    assert got_ts == sorted(ts)


def test_processes_and_threads_from_lineage(exported):
    tape, manifest, d = exported
    rows = api.open(tape).sql("SELECT ts_ns, event, pid, tgid, filename FROM processes ORDER BY ts_ns, seq").to_pylist()
    T = pb.TrackEvent.Type
    on_threads = d.on(lambda t: t.HasField("thread"))
    instants = [p for p in on_threads if p.track_event.type == T.TYPE_INSTANT]
    assert len(instants) == len(rows)
    assert sorted(p.timestamp for p in instants) == sorted(r["ts_ns"] for r in rows)
    assert collections.Counter(p.track_event.name.split()[0] for p in instants) == \
        collections.Counter(r["event"] for r in rows)
    threads = {(t.thread.pid, t.thread.tid) for t in d.tracks.values() if t.HasField("thread")}
    assert threads == {(r["tgid"] if r["tgid"] is not None else r["pid"], r["pid"]) for r in rows}
    # a slice per program a thread ran: one begins at every exec, named by the file
    begins = [p for p in on_threads if p.track_event.type == T.TYPE_SLICE_BEGIN]
    execs = [r for r in rows if r["event"] == "exec" and r["filename"]]
    assert collections.Counter((p.timestamp, p.track_event.name) for p in begins) >= \
        collections.Counter((r["ts_ns"], Path(r["filename"]).name) for r in execs)
    # a process is named by the file it last exec'd
    last = {r["tgid"]: Path(r["filename"]).name for r in execs}
    names = {t.process.pid: t.process.process_name for t in d.tracks.values() if t.HasField("process")}
    assert {tgid: names[tgid] for tgid in last} == last


def test_every_track_nests_and_runs_forward(exported):
    """What a trace processor would refuse: an end without a begin, a slice left open,
    time going back on a track, a track used with two kinds of events."""
    tape, manifest, d = exported
    T = pb.TrackEvent.Type
    depth: dict[int, int] = collections.Counter()
    last: dict[int, int] = {}
    for p in d.events:
        uuid, kind = p.track_event.track_uuid, p.track_event.type
        assert p.timestamp >= last.get(uuid, 0), d.name(uuid)
        last[uuid] = p.timestamp
        is_counter = d.tracks[uuid].HasField("counter")
        assert is_counter == (kind == T.TYPE_COUNTER), d.name(uuid)
        if kind == T.TYPE_SLICE_BEGIN:
            depth[uuid] += 1
        elif kind == T.TYPE_SLICE_END:
            assert depth[uuid] > 0, d.name(uuid)
            depth[uuid] -= 1
    assert not +depth, "slices left open"


def test_same_tape_same_bytes(tmp_path):
    a, b = tmp_path / "a.pftrace", tmp_path / "b.pftrace"
    assert run(["export", str(TAPES[0]), "--perfetto", str(a)]) == 0
    assert run(["export", str(TAPES[0]), "--perfetto", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize("args, needle", [
    (["export", "{tape}"], "--perfetto"),
    (["export", "{tmp}", "--perfetto", "{tmp}/x.pftrace"], "manifest"),
    (["export", "{tape}", "--perfetto", "{tmp}"], "is a folder"),
    (["export", "{tape}", "--perfetto", "{tmp}/no/such/x.pftrace"], "does not exist"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, args, needle):
    argv = [a.format(tape=TAPES[0], tmp=tmp_path) for a in args]
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err, err
    assert not list(tmp_path.glob("**/*.pftrace"))


def test_a_damaged_time_is_exit_2_naming_the_tape(tmp_path, capsys):
    """A tape is untrusted: a negative ts_ns in `processes` is one line and exit 2, no file."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    tape = tmp_path / "tape"
    shutil.copytree(REPO / "fixtures" / "tapes" / "runc-quota", tape)
    part = sorted((tape / "processes").glob("part-*.parquet"))[0]
    t = pq.read_table(part)
    i = t.schema.get_field_index("ts_ns")
    ts = t.column(i).to_pylist()
    ts[0] = -5
    pq.write_table(t.set_column(i, t.schema.field(i), pa.array(ts, t.schema.field(i).type)), part)
    out = tmp_path / "x.pftrace"
    assert run(["export", str(tape), "--perfetto", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tape) in err and "out of range" in err, err
    assert not out.exists() and not list(tmp_path.glob(".*tmp*"))


def test_wall_times_go_back_to_boottime_across_a_clock_step():
    """The views' `ts` uses the nearest preceding clock pair (an NTP step moves the offset);
    the export turns such a `ts` back into the boottime it came from, to the microsecond."""
    from datetime import datetime, timedelta

    from nodetape.export.perfetto import _Clock
    from nodetape.tape.clockmap import offset_at

    o1 = 1_795_755_994_312_800_462
    pairs = [(1_000_000_000, o1), (5_000_000_000, o1 + 3_000_000_000)]  # the wall clock stepped 3 s ahead
    clock = _Clock(pairs)
    for boot in (1_000_000_123, 4_999_999_000, 5_000_000_000, 5_000_000_999, 9_123_456_789):
        wall_us = (boot + offset_at(boot, pairs)) // 1000  # what make_timestamp(... // 1000) gives
        wall = datetime(1970, 1, 1) + timedelta(microseconds=wall_us)
        assert 0 <= boot - clock.boot_ns(wall) < 1000, boot
