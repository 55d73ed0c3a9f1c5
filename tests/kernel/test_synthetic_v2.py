"""The cgroup, samples and psi sources on synthetic pure-cgroup2 trees (fixtures/synthetic/).

This kernel is hybrid (no cpu or memory controller on cgroup2) and runs no
kubelet, so the layouts of a pure v2 Kubernetes node, with both cgroup drivers,
are literal files written by fixtures/synthetic/make_trees.py. Each test records
on a COPY of a tree through the whole loop (Recorder -> tape -> DuckDB) and
changes the copy while recording, as the kernel would. The numbers are the
fixture's test inputs, not kernel data. No root needed, but a real recorder runs
on real inotify with sleeps between the edits, so these run with the kernel tests
(serialized); tests/unit/test_synthetic_trees.py checks the trees themselves.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import pytest
from nodetape.recorder.loop import Recorder, RecordOptions
from nodetape.recorder.source import RecordContext

import nodetape
from nodetape.tape.reader import connect, open_tapes

pytestmark = pytest.mark.kernel

SYNTH = Path(__file__).resolve().parents[2] / "fixtures" / "synthetic"
_spec = importlib.util.spec_from_file_location("make_trees", SYNTH / "make_trees.py")
mt = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("make_trees", mt)  # dataclasses look their module up there
_spec.loader.exec_module(mt)

INTERVAL = 0.2

# per driver: the containers' directories (relative paths) and identities
WEB_UID, BATCH_UID, DB_UID = mt.uid("web"), mt.uid("batch"), mt.uid("db")
WEB_APP, WEB_PAUSE, BATCH_JOB, DB_MAIN = (mt.cid(n) for n in ("web-app", "web-pause", "batch-job", "db-main"))
SIDECAR = mt.cid("web-sidecar")  # made during the recording


def _us(u):
    return u.replace("-", "_")


LAYOUTS = {
    "v2-systemd": {
        "web_pod": f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{_us(WEB_UID)}.slice",
        "web_app": "{web_pod}/cri-containerd-" + WEB_APP + ".scope",
        "web_pause": "{web_pod}/cri-containerd-" + WEB_PAUSE + ".scope",
        "sidecar": "{web_pod}/cri-containerd-" + SIDECAR + ".scope",
        "batch_pod": f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{_us(BATCH_UID)}.slice",
        "batch_job": "{batch_pod}/crio-" + BATCH_JOB + ".scope",
        "db_pod": f"/kubepods.slice/kubepods-pod{_us(DB_UID)}.slice",
        "db_main": "{db_pod}/docker-" + DB_MAIN + ".scope",
        "qos_dirs": ["/kubepods.slice", "/kubepods.slice/kubepods-burstable.slice",
                     "/kubepods.slice/kubepods-besteffort.slice"],
        "runtimes": {"web_app": "containerd", "web_pause": "containerd", "sidecar": "containerd",
                     "batch_job": "cri-o", "db_main": "docker"},
    },
    "v2-cgroupfs": {
        "web_pod": f"/kubepods/burstable/pod{WEB_UID}",
        "web_app": "{web_pod}/" + WEB_APP,
        "web_pause": "{web_pod}/" + WEB_PAUSE,
        "sidecar": "{web_pod}/" + SIDECAR,
        "batch_pod": f"/kubepods/besteffort/pod{BATCH_UID}",
        "batch_job": "{batch_pod}/crio-" + BATCH_JOB,
        "db_pod": f"/kubepods/pod{DB_UID}",
        "db_main": "{db_pod}/" + DB_MAIN,
        "qos_dirs": ["/kubepods", "/kubepods/burstable", "/kubepods/besteffort"],
        # the cgroupfs driver names containerd and docker containers by bare id
        "runtimes": {"web_app": None, "web_pause": None, "sidecar": None, "batch_job": "cri-o", "db_main": None},
    },
}


def paths(driver: str) -> dict:
    lay = LAYOUTS[driver]
    out = {k: v for k, v in lay.items() if isinstance(v, str) and "{" not in v}
    for k, v in lay.items():
        if isinstance(v, str) and "{" in v:
            out[k] = v.format(**out)
    return out


def expected_identity(driver: str) -> dict[str, tuple]:
    """cgroup path -> (pod_uid, container_id, qos_class, runtime) for every cgroup of the fixture tree."""
    p, lay = paths(driver), LAYOUTS[driver]
    rt = lay["runtimes"]
    ident = {"/": (None,) * 4, "/init.scope": (None,) * 4, "/system.slice": (None,) * 4,
             "/system.slice/containerd.service": (None,) * 4,
             f"/system.slice/docker-{mt.cid('standalone')}.scope": (None,) * 4}
    top, burst, best = lay["qos_dirs"]
    ident[top] = (None,) * 4
    ident[burst] = (None, None, "burstable", None)
    ident[best] = (None, None, "besteffort", None)
    ident[p["web_pod"]] = (WEB_UID, None, "burstable", None)
    ident[p["web_app"]] = (WEB_UID, WEB_APP, "burstable", rt["web_app"])
    ident[p["web_pause"]] = (WEB_UID, WEB_PAUSE, "burstable", rt["web_pause"])
    ident[p["batch_pod"]] = (BATCH_UID, None, "besteffort", None)
    ident[p["batch_job"]] = (BATCH_UID, BATCH_JOB, "besteffort", rt["batch_job"])
    ident[p["db_pod"]] = (DB_UID, None, "guaranteed", None)
    ident[p["db_main"]] = (DB_UID, DB_MAIN, "guaranteed", rt["db_main"])
    return ident


def _overwrite(path: Path, text: str) -> None:
    """Replace a file's content with ONE pwrite of the same length (no truncation): a
    sampler reading concurrently sees the old or the new text, as with a kernel file."""
    old = path.read_bytes()
    new = text.encode()
    assert len(new) == len(old), (path, old, new)
    fd = os.open(path, os.O_WRONLY)
    try:
        assert os.pwrite(fd, new, 0) == len(new)
    finally:
        os.close(fd)


def _make_container(tree, d: Path, files: dict[str, str]) -> None:
    # the kernel creates a cgroup's files before its directory becomes visible; a
    # plain folder cannot, so the sources' view (the shared inotify tree, whose lock
    # every drain and sync takes) is held while the folder and its files are made
    with tree.locked():
        d.mkdir()
        for name, text in files.items():
            (d / name).write_text(text)


def _remove_container(tree, d: Path) -> None:
    with tree.locked():
        for f in d.iterdir():
            f.unlink()
        d.rmdir()


SIDECAR_FILES = {
    "cgroup.controllers": "cpuset cpu io memory pids\n", "cgroup.subtree_control": "", "cgroup.type": "domain\n",
    "cgroup.procs": "4300\n", "cgroup.threads": "4300\n", "cgroup.events": "populated 0\nfrozen 0\n",
    "cpu.stat": ("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnice_usec 0\nnr_periods 1\nnr_throttled 0\n"
                 "throttled_usec 0\nnr_bursts 0\nburst_usec 0\n"),
    "cpu.max": "10000 100000\n", "cpu.weight": "100\n", "memory.current": "1048576\n", "memory.max": "max\n",
    "memory.high": "max\n", "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
    "pids.current": "1\n", "pids.max": "max\n",
    "cpu.pressure": "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
    "memory.pressure": "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
    "io.pressure": "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
}


def record_with_edits(tmp_path: Path, driver: str):
    """Record cgroup,samples,psi on a copy of the tree while it changes; returns (tape, con, manifest, root)."""
    root = tmp_path / "cgroupfs"
    shutil.copytree(SYNTH / driver, root)
    p = paths(driver)
    ctx = RecordContext(cgroup_root=root, interval_ns=int(INTERVAL * 1e9))
    out = tmp_path / "tape"
    rec = Recorder(RecordOptions(out=out, sources=["cgroup", "samples", "psi"], ctx=ctx,
                                 duration_ns=int(2.3e9), tick_ns=50_000_000))
    errors: list[Exception] = []

    def workload():
        try:
            while "cgroup_tree" not in ctx.shared:
                time.sleep(0.01)
            tree = ctx.shared["cgroup_tree"]
            time.sleep(3 * INTERVAL)  # a few samples of the fixture's values first
            web = root / p["web_app"].lstrip("/")
            # 100 more periods, 80 of them throttled, 400 ms more throttled, 900 ms more CPU
            _overwrite(web / "cpu.stat", (web / "cpu.stat").read_text()
                       .replace("usage_usec 61000000", "usage_usec 61900000")
                       .replace("user_usec 42700000", "user_usec 43600000")
                       .replace("nr_periods 1000", "nr_periods 1100")
                       .replace("nr_throttled 400", "nr_throttled 480")
                       .replace("throttled_usec 9500000", "throttled_usec 9900000"))
            batch = root / p["batch_job"].lstrip("/")
            # a write to cpu.max (IN_MODIFY) is what makes the sampler re-read a limit
            (batch / "cpu.max").write_text("30000 100000\n")
            _overwrite(batch / "memory.events", "low 0\nhigh 0\nmax 2\noom 2\noom_kill 2\noom_group_kill 0\n")
            side = root / p["sidecar"].lstrip("/")
            _make_container(tree, side, SIDECAR_FILES)
            time.sleep(2 * INTERVAL)
            _overwrite(side / "cgroup.events", "populated 1\nfrozen 0\n")
            time.sleep(3 * INTERVAL)
            _remove_container(tree, side)
        except Exception as e:  # noqa: BLE001 - surfaced in the test thread
            errors.append(e)

    th = threading.Thread(target=workload)
    th.start()
    manifest = rec.run()
    th.join()
    assert not errors, errors
    for name in ("cgroup", "samples", "psi"):
        assert manifest["sources"][name]["status"] == "stopped", manifest["sources"][name]
    return out, connect(open_tapes([out])), manifest, root


@pytest.fixture(scope="module", params=sorted(LAYOUTS))
def recorded(request, tmp_path_factory):
    driver = request.param
    out, con, manifest, root = record_with_edits(tmp_path_factory.mktemp(driver), driver)
    return driver, out, con, manifest, root


def test_layout_is_v2(recorded):
    _, _, _, manifest, root = recorded
    assert manifest["cgroup"]["mode"] == "v2"
    assert manifest["cgroup"]["hierarchies"] == {"unified": str(root)}


def test_every_cgroup_is_seen_with_its_identity(recorded):
    driver, _, con, _, _ = recorded
    rows = con.execute("SELECT cgroup_path, pod_uid, container_id, qos_class, runtime, hierarchy, source, cgroup_id "
                       "FROM cgroup_events WHERE kind = 'seen' ORDER BY seq").fetchall()
    seen = {r[0]: r[1:5] for r in rows}
    assert seen == expected_identity(driver)
    assert all(r[5] == "unified" and r[6] == "scan" and r[7] is not None for r in rows)


def test_container_made_while_recording_is_created_populated_removed(recorded):
    driver, _, con, _, _ = recorded
    side = paths(driver)["sidecar"]
    rows = con.execute("SELECT kind, source, pod_uid, container_id, qos_class, runtime FROM cgroup_events "
                       "WHERE cgroup_path = ? ORDER BY ts_ns, seq", [side]).fetchall()
    ident = (WEB_UID, SIDECAR, "burstable", LAYOUTS[driver]["runtimes"]["sidecar"])
    assert rows == [("created", "inotify", *ident), ("populated", "inotify", *ident), ("removed", "inotify", *ident)]


def test_memory_events_growth_is_an_oom_kill_row(recorded):
    driver, _, con, _, _ = recorded
    rows = con.execute("SELECT kind, count, pod_uid, container_id FROM cgroup_events "
                       "WHERE cgroup_path = ? AND kind NOT IN ('seen') ORDER BY seq",
                       [paths(driver)["batch_job"]]).fetchall()
    assert sorted(rows) == sorted([(k, 1, BATCH_UID, BATCH_JOB) for k in ("oom", "oom_kill", "memory_max")])


def _samples(con, path):
    return con.execute("SELECT cpu_usage_usec, nr_periods, nr_throttled, throttled_usec, cpu_quota_usec, "
                       "cpu_period_usec, memory_current, memory_max, pids_current, nr_procs, pod_uid, container_id, "
                       "qos_class, runtime, hierarchy, cgroup_id FROM cgroup_samples WHERE cgroup_path = ? "
                       "ORDER BY ts_ns", [path]).fetchall()


def test_samples_carry_the_files_values_and_the_edits(recorded):
    driver, _, con, _, _ = recorded
    p, rt = paths(driver), LAYOUTS[driver]["runtimes"]
    web = _samples(con, p["web_app"])
    assert len(web) >= 6
    before = (61_000_000, 1000, 400, 9_500_000, 20000, 100000, 52_428_800, 268_435_456, 2, 2,
              WEB_UID, WEB_APP, "burstable", rt["web_app"], "unified")
    after = (61_900_000, 1100, 480, 9_900_000) + before[4:]
    assert web[0][:15] == before
    assert web[-1][:15] == after
    assert {r[:15] for r in web} == {before, after}
    assert web[0][15] is not None and len({r[15] for r in web}) == 1  # cgroup_id: the directory's inode
    # 'max' quota and memory limit are NULL, never 0; the written quota is read after its IN_MODIFY
    batch = _samples(con, p["batch_job"])
    assert batch[0][4:8] == (None, 100000, 10_485_760, None)
    assert batch[-1][4:8] == (30000, 100000, 10_485_760, None)
    db = _samples(con, p["db_main"])
    assert db[-1][:10] == (120_000_000, 2400, 0, 0, 50000, 100000, 134_217_728, 268_435_456, 3, 3)
    # a pod cgroup: no processes of its own (cgroup.procs empty), its subtree's pids
    pod = _samples(con, p["web_pod"])
    assert pod[-1][8:10] == (3, 0)
    # the root has no memory.current, pids.current, cpu.max (CFTYPE_NOT_ON_ROOT): NULL there
    root = _samples(con, "/")
    assert root and root[-1][:10] == (190_940_000, 0, 0, 0, None, None, None, None, None, 1)
    # the container made while recording is sampled too
    side = _samples(con, p["sidecar"])
    assert side and side[-1][:14] == (1500, 1, 0, 0, 10000, 100000, 1_048_576, None, 1, 1,
                                      WEB_UID, SIDECAR, "burstable", rt["sidecar"])
    # every cgroup of the fixture has samples
    sampled = {r[0] for r in con.execute("SELECT DISTINCT cgroup_path FROM cgroup_samples").fetchall()}
    assert set(expected_identity(driver)) | {p["sidecar"]} == sampled


def test_psi_has_every_cgroup_scope(recorded):
    driver, _, con, _, _ = recorded
    rows = con.execute("SELECT scope, resource, count(*) FROM psi_samples WHERE scope <> 'system' GROUP BY ALL").fetchall()
    scopes = {(s, r) for s, r, _ in rows}
    want = set(expected_identity(driver)) | {paths(driver)["sidecar"]}
    assert scopes == {(s, r) for s in want for r in ("cpu", "memory", "io")}
    web = con.execute("SELECT some_avg10, some_total_usec, full_avg10 FROM psi_samples WHERE scope = ? AND resource = 'cpu'",
                      [paths(driver)["web_app"]]).fetchall()
    assert set(web) == {(12.5, 7_300_000, 0.0)}


def test_throttle_timeline_on_the_synthetic_tape(recorded):
    driver, out, _, _, _ = recorded
    web = paths(driver)["web_app"]
    t = nodetape.open(out).query("throttle_timeline", path=web).to_pylist()
    assert t, "no windows"
    assert {(r["cgroup_path"], r["pod_uid"], r["container_id"]) for r in t} == {(web, WEB_UID, WEB_APP)}
    # the edit: 100 periods, 80 throttled, 400 ms throttled, 900 ms CPU, all in one sample's growth
    assert sum(r["nr_periods"] for r in t) == 100
    assert sum(r["nr_throttled"] for r in t) == 80
    hot = [r for r in t if r["nr_periods"]]
    assert len(hot) == 1
    assert hot[0]["throttle_pct"] == 80.0
    assert hot[0]["throttled_ms"] == 400.0
    assert hot[0]["cpu_usage_ms"] == 900.0
    assert all(r["quota_cores"] == 0.2 for r in t)
    assert all(r["psi_cpu_some_avg10"] == 12.5 for r in t)
    assert all(r["throttle_pct"] == 0.0 for r in t if r is not hot[0])


def test_pod_births_on_the_synthetic_tape(recorded):
    driver, out, _, _, _ = recorded
    rows = nodetape.open(out).query("pod_births").to_pylist()
    side = paths(driver)["sidecar"]
    # only the container made while recording was born in this tape; the others were seen at start
    assert {(r["pod_uid"], r["container_id"]) for r in rows} == {(WEB_UID, SIDECAR)}
    stages = [r["stage"] for r in rows]
    assert stages[0] == "cgroup_created" and "populated" in stages
    assert all(r["cgroup_path"] == side for r in rows)
    first = rows[0]
    assert first["offset_ms"] == 0
    assert all(r["offset_ms"] >= 0 for r in rows)
