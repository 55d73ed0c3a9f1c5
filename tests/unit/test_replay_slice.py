"""`replay --out`: a slice is a valid tape answering the original's named queries over its window."""

from __future__ import annotations

import io

import pytest

import nodetape
from nodetape.queries import catalog
from nodetape.replay.command import run_replay
from nodetape.tape.reader import open_tape

from replay_util import BOOT0, cg_event, make_tape, rows

S = 1_000_000_000
POD = "0b1c2d3e-1111-2222-3333-444455556666"


def cpath(i: int) -> str:
    return f"/kubepods/burstable/pod{POD}/{'%064x' % (i + 1)}"


def busy_tape(path):
    """10 s: a container created every 2 s (in unified and cpu), 1 s samples of throttled counters."""
    flushes = []
    for sec in range(10):
        t = BOOT0 + sec * S
        batches = []
        if sec % 2 == 1:
            i = sec // 2
            batches.append(("cgroup_events", rows([
                cg_event(t + 100, "created", cpath(i), cgroup_id=100 + i, pod_uid=POD, container_id="%064x" % (i + 1)),
                cg_event(t + 100, "created", cpath(i), hierarchy="cpu", cgroup_id=900 + i, pod_uid=POD, container_id="%064x" % (i + 1)),
                cg_event(t + 200, "populated", cpath(i), cgroup_id=100 + i, pod_uid=POD, container_id="%064x" % (i + 1)),
            ])))
        live = [i for i in range(5) if 2 * i + 1 <= sec]
        if live:
            n = len(live)
            batches.append(("cgroup_samples", {
                "ts_ns": [t + 500] * n, "hierarchy": ["cpu"] * n, "cgroup_path": [cpath(i) for i in live],
                "cgroup_id": [900 + i for i in live], "cpu_usage_usec": [sec * 300_000 + i for i in live],
                "nr_periods": [sec * 10 for _ in live], "nr_throttled": [sec * 4 for _ in live],
                "throttled_usec": [sec * 20_000 for _ in live], "cpu_quota_usec": [20_000] * n,
                "cpu_period_usec": [100_000] * n, "pod_uid": [POD] * n,
                "container_id": ["%064x" % (i + 1) for i in live]}))
        batches.append(("psi_samples", {"ts_ns": [t + 600], "scope": ["system"], "resource": ["cpu"],
                                        "some_avg10": [sec / 4], "some_avg60": [0.0], "some_avg300": [0.0],
                                        "some_total_usec": [sec * 1000]}))
        batches.append(("recorder_stats", {"ts_ns": [t + 700], "source": ["recorder"], "events": [sec]}))
        flushes.append(batches)
    return make_tape(path, flushes, end_ns=BOOT0 + 10 * S)


@pytest.fixture
def tape(tmp_path):
    return busy_tape(tmp_path / "tape")


def slice_of(tape, out, **kw):
    assert run_replay(tapes=[str(tape)], out=out, stdout=io.StringIO(), **kw) == 0
    return out


def test_full_slice_answers_every_named_query_identically(tape, tmp_path):
    sl = slice_of(tape, tmp_path / "slice")
    m = open_tape(sl).manifest
    assert m["slice"]["of"] == [str(tape)] and m["closed"] and m["host"]["hostname"] == "node-a"
    assert m["clock"] == open_tape(tape).manifest["clock"] and m["cgroup"]["mode"] == "hybrid"
    for name in catalog():
        a = nodetape.open([tape]).query(name).to_pylist()
        b = nodetape.open([sl]).query(name).to_pylist()
        assert a == b, name
    # and the slice replays to the same event stream
    o1, o2 = io.StringIO(), io.StringIO()
    run_replay(tapes=[str(tape)], max_speed=True, stdout=o1)
    run_replay(tapes=[str(sl)], max_speed=True, stdout=o2)
    assert o1.getvalue() == o2.getvalue()


def test_windowed_slice_matches_original_over_the_window(tape, tmp_path):
    sl = slice_of(tape, tmp_path / "slice", from_="+3s", to="+8s")
    m = open_tape(sl).manifest
    assert (m["start_ns"], m["end_ns"]) == (BOOT0 + 3 * S, BOOT0 + 8 * S)
    assert (m["slice"]["from_ns"], m["slice"]["to_ns"]) == (BOOT0 + 3 * S, BOOT0 + 8 * S)
    lo, hi = BOOT0 + 3 * S, BOOT0 + 8 * S
    for tbl in ("cgroup_events", "cgroup_samples", "psi_samples", "recorder_stats"):
        q = f"SELECT * EXCLUDE (host{', seq' if tbl == 'cgroup_events' else ''}) FROM {tbl} WHERE ts_ns >= {lo} AND ts_ns < {hi} ORDER BY ALL"
        assert nodetape.open([tape]).sql(q).to_pylist() == nodetape.open([sl]).sql(q).to_pylist() != [], tbl
    # throttle_timeline: windows after the slice's first sample (which has no predecessor)
    if "throttle_timeline" in catalog():
        def tl(p):
            rows_ = nodetape.open([p]).query("throttle_timeline").to_pylist()
            return [r for r in rows_ if lo + S <= r["window_start"].timestamp() * 1e9 - (open_tape(p).offset_ns) < hi]
        a, b = tl(tape), tl(sl)
        assert a == b and a
    # pod_births: the containers born inside the window
    if "pod_births" in catalog():
        def births(p):
            r = nodetape.open([p]).query("pod_births").to_pylist()
            return sorted((x["container_id"], x["stage"], x["offset_ms"]) for x in r
                          if x["container_id"] in {"%064x" % 2, "%064x" % 3})
        a, b = births(tape), births(sl)
        assert a == b and a


def test_slice_with_a_filter_and_bad_out(tape, tmp_path):
    sl = slice_of(tape, tmp_path / "slice", cgroup=cpath(0), tables="cgroup_events,cgroup_samples")
    got = nodetape.open([sl]).sql("SELECT DISTINCT cgroup_path FROM cgroup_events UNION SELECT DISTINCT cgroup_path FROM cgroup_samples").to_pylist()
    assert got == [{"cgroup_path": cpath(0)}]
    assert open_tape(sl).manifest["slice"]["cgroup"] == cpath(0)
    from nodetape.core.errors import UserError
    with pytest.raises(UserError, match="not an empty folder"):
        slice_of(tape, sl)


def test_windowed_slice_of_a_real_tape_carries_the_state_at_its_start(tmp_path):
    """runc-quota (a real recording) sliced to +1s..+3s: the slice also carries what existed at
    +1s (cgroups, processes, the last samples), so the tree at a moment inside the window, the
    processes alive in it, and every whole throttle and PSI window in it answer as the original."""
    import datetime as dt
    from pathlib import Path

    orig = Path(__file__).resolve().parents[2] / "fixtures" / "tapes" / "runc-quota"
    sl = slice_of(orig, tmp_path / "slice", from_="+1s", to="+3s")
    m = open_tape(sl).manifest["slice"]
    assert {"cgroup_events", "processes", "cgroup_samples"} <= set(m["carried_rows"])
    off = open_tape(orig).offset_ns
    lo, hi = (dt.datetime.fromtimestamp((m[k] + off) / 1e9, dt.timezone.utc) for k in ("from_ns", "to_ns"))

    def utc(t):
        return None if t is None else t.astimezone(dt.timezone.utc)

    mid = (lo + (hi - lo) / 2).isoformat()
    assert nodetape.open([orig]).query("cgroup_tree", at=mid).to_pylist() == nodetape.open([sl]).query("cgroup_tree", at=mid).to_pylist()
    for q in ("throttle_timeline", "psi_timeline"):
        def whole(p, q=q):
            return [r for r in nodetape.open([p]).query(q).to_pylist() if lo <= utc(r["window_start"]) and utc(r["window_end"]) <= hi]
        a = whole(orig)
        assert a and a == whole(sl), q

    def alive(p):
        out = []
        for r in nodetape.open([p]).query("process_tree").to_pylist():
            if (r["exit_ts"] is None or utc(r["exit_ts"]) >= lo) and (r["started"] is None or utc(r["started"]) < hi):
                if r["exit_ts"] is not None and utc(r["exit_ts"]) >= hi:  # after the window: not in the slice
                    r.update(exit_ts=None, exit_code=None, exit_signal=None)
                out.append(r)
        return sorted(out, key=lambda r: r["pid"])
    a = alive(orig)
    assert a and a == alive(sl)
