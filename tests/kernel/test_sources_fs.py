"""Real-kernel tests of the file-based sources (issue 3), recorded through the whole loop
(Recorder -> tape -> DuckDB). Each makes and removes its own cgroups and processes."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from kernelutil import (
    CGROUP_ROOT,
    busy_loop_argv,
    kill_procs,
    record_during,
    require,
    require_root,
    rmdir_tree,
    spawn_in_cgroups,
    unique_name,
    v1_cgroup,
    v1_controller_dir,
)
from nodetape.recorder.source import RecordContext

from nodetape.tape.reader import connect, open_tapes

UNIFIED = CGROUP_ROOT / "unified"
pytestmark = pytest.mark.kernel


def record(tmp_path, sources, seconds, workload=None, interval=0.5, options=None, cgroup_root=CGROUP_ROOT):
    """Record `sources` for `seconds` while `workload()` runs on a thread; return (duckdb, manifest)."""
    ctx = RecordContext(cgroup_root=Path(cgroup_root), interval_ns=int(interval * 1e9), options=options or {})
    manifest = record_during(tmp_path / "tape", sources, ctx, seconds, workload)
    for name in sources:
        assert manifest["sources"][name]["status"] == "stopped", manifest["sources"][name]
    return connect(open_tapes([tmp_path / "tape"])), manifest


def unified_cgroup(name):
    require_root()
    require(UNIFIED.is_dir() or (CGROUP_ROOT / "cgroup.controllers").exists(), "no cgroup2 hierarchy")
    base = UNIFIED if UNIFIED.is_dir() else CGROUP_ROOT
    return base / name


def test_cgroup_created_during_recording(tmp_path):
    name = unique_name()
    with v1_cgroup("cpu", name) as cpu_dir:
        rmdir_tree(cpu_dir)  # it is made during the recording

        def workload():
            time.sleep(0.4)
            cpu_dir.mkdir()
            (cpu_dir / "child").mkdir()
            time.sleep(0.3)
            (cpu_dir / "child").rmdir()

        con, _ = record(tmp_path, ["cgroup"], 1.5, workload)
        rows = con.execute("SELECT kind, source, cgroup_path, cgroup_id FROM cgroup_events WHERE hierarchy = 'cpu' "
                           "AND cgroup_path LIKE ? ORDER BY ts_ns, seq", [f"/{name}%"]).fetchall()
    assert ("created", "inotify", f"/{name}", cpu_dir.stat().st_ino if cpu_dir.exists() else rows[0][3]) == rows[0]
    kinds = [(k, p) for k, _, p, _ in rows]
    assert kinds == [("created", f"/{name}"), ("created", f"/{name}/child"), ("removed", f"/{name}/child")]
    assert all(r[3] is not None for r in rows)
    # the tree at start is there too, as seen rows
    assert con.execute("SELECT count(*) FROM cgroup_events WHERE kind = 'seen' AND cgroup_path = '/'").fetchone()[0] >= 1


def test_v1_quota_throttles_busy_process(tmp_path):
    name = unique_name()
    with v1_cgroup("cpu", name) as cpu_dir, v1_cgroup("cpuacct", name) as acct_dir:
        (cpu_dir / "cpu.cfs_period_us").write_text("100000")
        (cpu_dir / "cpu.cfs_quota_us").write_text("15000")
        p = spawn_in_cgroups(busy_loop_argv(4), [cpu_dir, acct_dir])
        try:
            con, _ = record(tmp_path, ["samples"], 2.5, interval=0.5)
        finally:
            p.kill()
            p.wait()
        rows = con.execute("SELECT nr_periods, nr_throttled, cpu_quota_usec, cpu_period_usec, cpu_usage_usec, nr_procs, "
                           "hierarchy FROM cgroup_samples WHERE cgroup_path = ? ORDER BY ts_ns", [f"/{name}"]).fetchall()
    assert len(rows) >= 4
    first, last = rows[0], rows[-1]
    periods, throttled = last[0] - first[0], last[1] - first[1]
    assert periods >= 10
    assert throttled / periods > 0.9, rows
    assert last[2:4] == (15000, 100000)
    assert last[4] > first[4]  # cpuacct usage grew
    assert last[5] == 1 and last[6] == "cpu"


def test_populated_then_unpopulated(tmp_path):
    cg = unified_cgroup(unique_name())
    cg.mkdir()
    try:
        def workload():
            time.sleep(0.3)
            p = spawn_in_cgroups(["sleep", "0.3"], [cg])
            p.wait()

        con, _ = record(tmp_path, ["cgroup"], 1.3, workload)
        rel = "/" + cg.name
        kinds = [r[0] for r in con.execute("SELECT kind FROM cgroup_events WHERE hierarchy = 'unified' AND cgroup_path = ? "
                                           "ORDER BY ts_ns, seq", [rel]).fetchall()]
    finally:
        kill_procs(cg)
        rmdir_tree(cg)
    assert kinds == ["seen", "populated", "unpopulated"]


@pytest.mark.parametrize("made", ["before", "during"])
def test_psi_trigger_fires_under_cpu_hog(tmp_path, made):
    """A trigger on a cgroup that a glob names fires under 3 CPU hogs on 2 cores, whether the
    cgroup existed when recording started or was made during it (a pod starting later)."""
    require(Path("/proc/pressure/cpu").exists(), "kernel without PSI")
    cg = unified_cgroup(unique_name())
    hogs = []

    def start_hogs():
        cg.mkdir()
        require((cg / "cpu.pressure").exists(), "cgroup2 without cpu.pressure")
        hogs.extend(spawn_in_cgroups(busy_loop_argv(7), [cg]) for _ in range(3))  # always one waiting

    if made == "before":
        start_hogs()
    try:
        # a 2 s window: this host lacks CAP_SYS_RESOURCE even as root, so shorter windows are refused;
        # such triggers are checked by the group's 2 s averaging work: the first firing comes about
        # 2 s after the hogs start (measured: 1.9 s, 2.3 s when made 0.3 s in), so record 5 s
        con, _ = record(tmp_path, ["psi", "psi-triggers"], 5.0, interval=0.5,
                        workload=(lambda: (time.sleep(0.3), start_hogs())) if made == "during" else None,
                        options={"psi_triggers": ["cpu some 100ms/2s"], "psi_trigger_cgroups": [f"/{cg.name[:-3]}*"]})
    finally:
        for h in hogs:
            h.kill()
            h.wait()
        rmdir_tree(cg)
    rel = "/" + cg.name
    fired = con.execute("SELECT resource, kind, stall_usec, window_usec, total_usec FROM psi_events WHERE scope = ?",
                        [rel]).fetchall()
    assert fired, "no PSI trigger firing recorded"
    assert fired[0][:4] == ("cpu", "some", 100_000, 2_000_000) and fired[0][4] > 0
    # the cgroup's own pressure file is sampled too
    n = con.execute("SELECT count(*) FROM psi_samples WHERE scope = ? AND resource = 'cpu' AND some_total_usec > 0",
                    [rel]).fetchone()[0]
    assert n >= 2


def test_populated_then_unpopulated_on_a_v1_only_cgroup(tmp_path):
    """v1 has no cgroup.events: a process written into cgroup.procs makes `populated` (the write
    is an inotify event), and its exit, which notifies nothing, `unpopulated` at the next re-read."""
    with v1_cgroup("cpu", unique_name()) as cg:
        def workload():
            time.sleep(0.3)
            p = spawn_in_cgroups(["sleep", "0.3"], [cg])
            p.wait()

        con, _ = record(tmp_path, ["cgroup"], 1.6, workload, interval=0.25)
        rows = con.execute("SELECT kind, source FROM cgroup_events WHERE hierarchy = 'cpu' AND cgroup_path = ? "
                           "ORDER BY ts_ns, seq", ["/" + cg.name]).fetchall()
    assert rows == [("seen", "scan"), ("populated", "inotify"), ("unpopulated", "poll")], rows


def test_psi_trigger_window_too_short_is_a_clear_error(tmp_path):
    require(Path("/proc/pressure/cpu").exists(), "kernel without PSI")
    from nodetape.recorder.sources.psi_triggers import PsiTriggerSource

    with pytest.raises(ValueError, match="500ms to 10s"):
        PsiTriggerSource().probe(RecordContext(options={"psi_triggers": ["cpu some 10ms/100ms"]}))


def test_runc_container_has_pod_identity(tmp_path):
    require_root()
    from nodetape import runc

    require(runc.have_runc(), "needs runc and /bin/busybox (busybox-static)")
    # a name as a person gives it (`runc run app-1a2b3c4d`), not a 64-hex runtime id: still the container
    c = runc.Container(tmp_path / "bundle", container_id=unique_name("app"), cpu_quota_us=15000)

    def workload():
        time.sleep(0.3)
        c.start()
        time.sleep(1.2)
        c.stop()

    try:
        con, _ = record(tmp_path, ["cgroup", "samples", "proc"], 2.2, workload, interval=0.4)
    finally:
        c.stop()
        runc.remove_pod_cgroups(CGROUP_ROOT, c.pod_uid)
    ev = con.execute("SELECT kind, qos_class, runtime FROM cgroup_events WHERE pod_uid = ? AND container_id = ? "
                     "AND hierarchy = 'cpu' ORDER BY ts_ns, seq", [c.pod_uid, c.container_id]).fetchall()
    assert ev[0] == ("created", "burstable", None)
    assert ("removed", "burstable", None) in ev
    s = con.execute("SELECT max(cpu_quota_usec), max(nr_procs), max(cpu_usage_usec) FROM cgroup_samples "
                    "WHERE pod_uid = ? AND container_id = ?", [c.pod_uid, c.container_id]).fetchone()
    assert s[0] == 15000 and s[1] == 1 and s[2] > 0
    # its shell was seen in the container's cgroup, in namespaces other than the host's
    p = con.execute("SELECT pid FROM processes WHERE event = 'seen' AND cgroup_path = ?", [c.cgroups_path]).fetchall()
    assert p
    # compared with the recorder's own namespaces (pid 1's may be unreadable in a sandbox)
    ns = dict(con.execute("SELECT pid, ns_inode FROM namespaces WHERE ns_type = 'mnt' AND pid IN (?, ?)",
                          [p[0][0], os.getpid()]).fetchall())
    assert ns[p[0][0]] != ns[os.getpid()]


def test_mounts_and_net_record_a_snapshot_and_changes(tmp_path):
    require_root()
    mnt = tmp_path / "mnt"
    mnt.mkdir()

    def workload():
        time.sleep(0.3)
        subprocess.run(["mount", "-t", "tmpfs", "nt-test", str(mnt)], check=True)
        time.sleep(0.6)
        subprocess.run(["umount", str(mnt)], check=True)

    try:
        con, _ = record(tmp_path, ["mounts", "net"], 1.6, workload, interval=0.3)
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
    ev = [r[0] for r in con.execute("SELECT event FROM mounts WHERE mountpoint = ? ORDER BY ts_ns", [str(mnt)]).fetchall()]
    assert ev == ["added", "removed"]
    assert con.execute("SELECT count(*) FROM mounts WHERE event = 'snapshot' AND mountpoint = '/proc'").fetchone()[0] == 1
    lo = con.execute("SELECT ifindex, mtu, rx_bytes IS NOT NULL FROM net_interfaces WHERE event = 'snapshot' AND ifname = 'lo'").fetchone()
    assert lo == (1, 65536, True)


def test_odd_cgroup_names_are_recorded_and_stop_nothing(tmp_path):
    """Spaces, unicode, bytes that are not UTF-8 and a 100-deep tree, made while recording:
    every one is in the tape (bad bytes spelled out as \\xff), and every source keeps running."""
    cpu = v1_controller_dir("cpu")
    require(cpu is not None, "no v1 cpu hierarchy")
    name = unique_name("nt-odd")
    bases = [unified_cgroup(name), cpu / name]
    odd = ["with space", "ünïcode-名前", b"bad\xffbyte", "/".join(["d"] * 100)]

    def workload():
        time.sleep(0.3)
        for b in bases:
            b.mkdir()
            for n in odd:
                if isinstance(n, bytes):
                    os.mkdir(os.fsencode(b) + b"/" + n)
                else:
                    (b / n).mkdir(parents=True)

    try:
        # record() asserts that every source ended 'stopped', not 'failed'
        con, _ = record(tmp_path, ["cgroup", "samples", "psi"], 2.0, workload, interval=0.4)
    finally:
        for b in bases:
            rmdir_tree(b)
    want = {f"/{name}/with space", f"/{name}/ünïcode-名前", f"/{name}/bad\\xffbyte", f"/{name}/" + "/".join(["d"] * 100)}
    for hier in ("unified", cpu.name):
        got = {r[0] for r in con.execute("SELECT cgroup_path FROM cgroup_events WHERE hierarchy = ? AND kind = 'created'",
                                         [hier]).fetchall()}
        assert want <= got, (hier, want - got)
    sampled = {r[0] for r in con.execute("SELECT DISTINCT cgroup_path FROM cgroup_samples WHERE hierarchy = ?",
                                         [cpu.name]).fetchall()}
    assert want <= sampled, want - sampled
    pressured = {r[0] for r in con.execute("SELECT DISTINCT scope FROM psi_samples").fetchall()}
    assert want <= pressured, want - pressured
