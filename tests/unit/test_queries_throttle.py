"""throttle_timeline on hand-written rows (test inputs for the SQL, not recordings)."""

from __future__ import annotations

from golden.tapes import MS, S, write_tape

import nodetape

POD = "1b2c3d4e-0000-4000-8000-00000000abcd"
CID = "b" * 64
BUSY = f"/kubepods/burstable/pod{POD}/{CID}"
IDLE = "/kubepods/besteffort/podidle"


def _samples():
    cols = {k: [] for k in ("ts_ns", "hierarchy", "cgroup_path", "cgroup_id", "cpu_usage_usec", "nr_periods",
                            "nr_throttled", "throttled_usec", "cpu_quota_usec", "cpu_period_usec",
                            "pod_uid", "container_id")}

    def add(ts, hierarchy, path, cid, usage=None, periods=None, throttled=None, thr_us=None, quota=None,
            period=None, pod=None, container=None):
        for k, v in (("ts_ns", ts), ("hierarchy", hierarchy), ("cgroup_path", path), ("cgroup_id", cid),
                     ("cpu_usage_usec", usage), ("nr_periods", periods), ("nr_throttled", throttled),
                     ("throttled_usec", thr_us), ("cpu_quota_usec", quota), ("cpu_period_usec", period),
                     ("pod_uid", pod), ("container_id", container)):
            cols[k].append(v)

    # busy cgroup under a 15% quota, v1: CFS counters in 'cpu', usage in 'cpuacct'
    for k in range(4):
        ts = 10 * S + k * S + 500 * MS
        add(ts, "cpu", BUSY, 101, periods=10 * k, throttled=9 * k, thr_us=80_000 * k, quota=15_000,
            period=100_000, pod=POD, container=CID)
        add(ts + MS, "cpuacct", BUSY, 102, usage=150_000 * k, pod=POD, container=CID)
    # the same path removed and made again: a new id, counters from zero
    add(14 * S + 500 * MS, "cpu", BUSY, 111, periods=4, throttled=1, thr_us=5_000, quota=15_000,
        period=100_000, pod=POD, container=CID)
    # idle cgroup with a quota: no period elapses
    for k in range(3):
        add(10 * S + k * S + 500 * MS, "cpu", IDLE, 201, periods=7, throttled=0, thr_us=0, quota=50_000,
            period=100_000)
    return cols


def _tape(tmp_path):
    psi = {"ts_ns": [11 * S + 600 * MS, 11 * S + 900 * MS, 11 * S + 700 * MS],
           "scope": [BUSY, BUSY, "system"], "resource": ["cpu", "cpu", "cpu"],
           "some_avg10": [40.0, 55.5, 99.0]}
    return write_tape(tmp_path / "tape", {"cgroup_samples": _samples(), "psi_samples": psi})


def test_throttle_windows_v1_counters_resets_and_idle(tmp_path):
    rows = nodetape.open(_tape(tmp_path)).query("throttle_timeline").to_pylist()
    busy = [r for r in rows if r["cgroup_path"] == BUSY]
    assert [r["window_start"].isoformat() for r in busy] == [
        "2024-01-01T00:00:11", "2024-01-01T00:00:12", "2024-01-01T00:00:13", "2024-01-01T00:00:14"]
    first = busy[0]
    assert (first["nr_periods"], first["nr_throttled"], first["throttle_pct"]) == (10, 9, 90.0)
    assert (first["throttled_ms"], first["cpu_usage_ms"], first["quota_cores"]) == (80.0, 150.0, 0.15)
    assert first["psi_cpu_some_avg10"] == 55.5
    assert (first["pod_uid"], first["container_id"]) == (POD, CID)
    assert (first["window_end"] - first["window_start"]).total_seconds() == 1
    assert busy[1]["psi_cpu_some_avg10"] is None
    reset = busy[3]  # new cgroup id: growth counted from zero; cpuacct has no sample there
    assert (reset["nr_periods"], reset["nr_throttled"], reset["throttle_pct"]) == (4, 1, 25.0)
    assert reset["cpu_usage_ms"] is None
    idle = [r for r in rows if r["cgroup_path"] == IDLE]
    assert [r["throttle_pct"] for r in idle] == [0.0, 0.0]
    assert idle[0]["quota_cores"] == 0.5 and idle[0]["pod_uid"] is None


def test_window_and_path_parameters(tmp_path):
    tape = _tape(tmp_path)
    rows = nodetape.open(tape).query("throttle_timeline", window="2s", path="%pod" + POD + "%").to_pylist()
    assert {r["cgroup_path"] for r in rows} == {BUSY}
    assert [(r["window_start"].second, r["nr_periods"], r["nr_throttled"]) for r in rows] == [
        (10, 10, 9), (12, 20, 18), (14, 4, 1)]
    assert rows[0]["throttle_pct"] == 90.0


def test_counter_going_down_is_a_reset(tmp_path):
    cols = {"ts_ns": [1 * S, 2 * S, 3 * S], "hierarchy": ["unified"] * 3, "cgroup_path": ["/a"] * 3,
            "cgroup_id": [5, 5, 5], "nr_periods": [100, 120, 3], "nr_throttled": [50, 60, 3],
            "cpu_usage_usec": [1_000_000, 1_500_000, 2_000]}
    rows = nodetape.open(write_tape(tmp_path / "t", {"cgroup_samples": cols})).query("throttle_timeline").to_pylist()
    assert [(r["nr_periods"], r["throttle_pct"], r["cpu_usage_ms"]) for r in rows] == [(20, 50.0, 500.0), (3, 100.0, 2.0)]
    assert rows[0]["quota_cores"] is None
