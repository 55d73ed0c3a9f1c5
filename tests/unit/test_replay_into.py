"""`replay --into`: the re-enacted tree has the recorded layout and kernel file formats; pacing."""

from __future__ import annotations

import io

from nodetape.recorder.kernelfs import cgroup_files as cf
from nodetape.recorder.kernelfs.cgroupfs import detect_layout
from nodetape.recorder.kernelfs.psi import parse_psi
from nodetape.replay.command import choose_speed, run_replay
from nodetape.replay.pace import Pacer
from nodetape.replay.sinks.cgroupfs import V1_NO_LIMIT, CgroupfsSink

from replay_util import BOOT0, HYBRID, V2, cg_event, make_tape, rows

S = 1_000_000_000
POD = "0b1c2d3e-1111-2222-3333-444455556666"
CID = "c" * 64
CPATH = f"/kubepods/burstable/pod{POD}/{CID}"


def one(cols: dict) -> dict:
    return {k: v[0] for k, v in cols.items()}


def sample(**kw):
    base = {"ts_ns": BOOT0, "hierarchy": "cpu", "cgroup_path": CPATH, "cgroup_id": 7, "cpu_usage_usec": 1234,
            "nr_periods": 10, "nr_throttled": 4, "throttled_usec": 20_000, "cpu_quota_usec": 20_000,
            "cpu_period_usec": 100_000, "memory_current": 8192, "memory_max": None, "pids_current": 2, "nr_procs": 1}
    base.update(kw)
    return base


def test_hybrid_layout_and_kernel_formats(tmp_path):
    root = tmp_path / "cg"
    sink = CgroupfsSink(root, HYBRID)
    sink.prepare()
    layout = detect_layout(root)
    assert layout.mode == "hybrid"
    assert set(layout.hierarchies) == {"cpu", "cpuacct", "memory", "pids", "unified"}
    assert layout.hierarchy_for("cpu") == "cpu" and layout.hierarchy_for("memory") == "memory"

    sink.write("cgroup_events", one(cg_event(BOOT0, "created", CPATH)))
    u = root / "unified" / CPATH.strip("/")
    assert (u / "cgroup.events").read_text() == "populated 0\nfrozen 0\n"
    assert (root / "unified" / "kubepods" / "cgroup.procs").exists()

    sink.write("cgroup_samples", sample())
    c = root / "cpu" / CPATH.strip("/")
    assert (c / "cpu.stat").read_text() == "nr_periods 10\nnr_throttled 4\nthrottled_time 20000000\n"
    assert cf.parse_cpu_stat((c / "cpu.stat").read_text())["throttled_usec"] == 20_000
    assert cf.parse_cfs_quota((c / "cpu.cfs_quota_us").read_text()) == 20_000
    assert cf.parse_int((c / "cpu.cfs_period_us").read_text()) == 100_000
    assert cf.cpuacct_usage_usec((root / "cpuacct" / CPATH.strip("/") / "cpuacct.usage").read_text()) == 1234
    m = root / "memory" / CPATH.strip("/")
    assert (m / "memory.usage_in_bytes").read_text() == "8192\n"
    assert (m / "memory.limit_in_bytes").read_text() == f"{V1_NO_LIMIT}\n"
    assert cf.parse_memory_limit((m / "memory.limit_in_bytes").read_text()) is None
    assert (root / "pids" / CPATH.strip("/") / "pids.current").read_text() == "2\n"

    # rewritten in place: same inode, so a reader's kept descriptor sees the new value
    ino = (c / "cpu.stat").stat().st_ino
    sink.write("cgroup_samples", sample(nr_periods=11, cpu_quota_usec=None))
    assert (c / "cpu.stat").stat().st_ino == ino
    assert (c / "cpu.stat").read_text().startswith("nr_periods 11\n")
    assert (c / "cpu.cfs_quota_us").read_text() == "-1\n"

    sink.write("cgroup_events", one(cg_event(BOOT0, "populated", CPATH)))
    assert (u / "cgroup.events").read_text() == "populated 1\nfrozen 0\n"
    sink.write("cgroup_events", one(cg_event(BOOT0, "attach", CPATH, pid=4242)))
    assert (u / "cgroup.procs").read_text() == "4242\n"
    sink.write("cgroup_events", {**one(cg_event(BOOT0, "oom_kill", CPATH, hierarchy="memory")), "count": 2})
    assert cf.parse_oom_control((m / "memory.oom_control").read_text()) == {"oom_kill": 2}

    psi = {"ts_ns": BOOT0, "scope": CPATH, "resource": "cpu", "some_avg10": 12.5, "some_avg60": 3.0,
           "some_avg300": 0.25, "some_total_usec": 999, "full_avg10": 1.0, "full_avg60": 0.0,
           "full_avg300": 0.0, "full_total_usec": 7}
    sink.write("psi_samples", psi)
    text = (u / "cpu.pressure").read_text()
    assert text == ("some avg10=12.50 avg60=3.00 avg300=0.25 total=999\n"
                    "full avg10=1.00 avg60=0.00 avg300=0.00 total=7\n")
    assert parse_psi(text) == {k: v for k, v in psi.items() if k not in ("ts_ns", "scope", "resource")}
    sink.write("psi_samples", {**psi, "scope": "system", "full_avg10": None})
    assert (root / "unified" / "cpu.pressure").read_text() == "some avg10=12.50 avg60=3.00 avg300=0.25 total=999\n"

    sink.write("cgroup_events", one(cg_event(BOOT0, "removed", CPATH)))
    assert not u.exists()
    # directories that only samples made (no lifecycle rows in those hierarchies) go with the cgroup
    assert not c.exists() and not m.exists()
    assert (root / "unified" / f"kubepods/burstable/pod{POD}").is_dir()
    # a late sample of a removed cgroup does not bring it back
    sink.write("cgroup_samples", sample())
    assert not c.exists()


def test_pure_v2_layout(tmp_path):
    root = tmp_path / "cg"
    sink = CgroupfsSink(root, V2)
    sink.prepare()
    assert detect_layout(root).mode == "v2"
    assert detect_layout(root).hierarchy_for("cpu") == "unified"
    sink.write("cgroup_samples", sample(hierarchy="unified", cpu_quota_usec=None, memory_max=1 << 20))
    d = root / CPATH.strip("/")
    assert cf.parse_cpu_stat((d / "cpu.stat").read_text()) == {
        "cpu_usage_usec": 1234, "nr_periods": 10, "nr_throttled": 4, "throttled_usec": 20_000}
    assert (d / "cpu.max").read_text() == "max 100000\n"
    assert (d / "memory.current").read_text() == "8192\n" and (d / "memory.max").read_text() == "1048576\n"


def test_pacer_with_fake_clock():
    now = [0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += int(s * 1e9)

    p = Pacer(2.0, start_ns=100 * S, clock=lambda: now[0], sleep=sleep)
    for t in (100 * S, 101 * S, 103 * S, 103 * S):
        p.wait(t)
    assert slept == [0.5, 1.0]
    assert Pacer(None, 0).paced is False


def test_speed_defaults():
    assert choose_speed(None, False, into=False, out_is_tty=False) is None
    assert choose_speed(None, False, into=False, out_is_tty=True) == 1.0
    assert choose_speed(None, False, into=True, out_is_tty=False) == 1.0
    assert choose_speed(None, True, into=True, out_is_tty=False) is None
    assert choose_speed(4, False, into=False, out_is_tty=False) == 4.0
    assert choose_speed(None, False, into=False, out_is_tty=True, check=True) is None


def test_into_through_run_replay_is_paced_at_recorded_times(tmp_path):
    tape = make_tape(tmp_path / "tape", [[("cgroup_events", rows([
        cg_event(BOOT0 + 1 * S, "created", CPATH), cg_event(BOOT0 + 3 * S, "removed", CPATH)]))]])
    now = [0]
    seen = []

    def sleep(s):
        now[0] += int(s * 1e9)
        seen.append((now[0], (tmp_path / "cg" / "unified" / CPATH.strip("/")).exists()))

    code = run_replay(tapes=[str(tape)], into=tmp_path / "cg", stdout=io.StringIO(),
                      clock=lambda: now[0], sleep=sleep)
    assert code == 0
    # waits 1 s before the creation, then 2 s before the removal: recorded pace, from the tape's start
    assert seen == [(1 * S, False), (3 * S, True)]
    assert not (tmp_path / "cg" / "unified" / CPATH.strip("/")).exists()


def test_a_late_release_of_a_removed_cgroup_leaves_its_new_namesake_alone(tmp_path):
    """eBPF cgroup_release comes when the kernel frees a removed cgroup, after RCU: by then the
    kubelet may have made the same path again (the next pod under /kubepods). Only `removed` rmdirs."""
    root = tmp_path / "cg"
    sink = CgroupfsSink(root, HYBRID)
    sink.prepare()
    for kind in ("created", "removed", "created"):
        sink.write("cgroup_events", one(cg_event(BOOT0, kind, "/kubepods")))
    sink.write("cgroup_events", one(cg_event(BOOT0, "created", CPATH)))
    sink.write("cgroup_events", {**one(cg_event(BOOT0, "release", "/kubepods")), "source": "ebpf"})
    assert (root / "unified" / CPATH.strip("/")).is_dir()
