"""Pods through a real containerd over CRI, recorded: names, phases, startup and stuck pods.

One recording (module fixture) holds two pods run the kubelet's way by the CRI
harness: `good` (an init container, then an app container under a 0.2-core quota)
and `broken` (its app container's command does not exist: StartContainer fails).
The harness times each CRI call on CLOCK_BOOTTIME, the tape's clock; the tests put
what the recorder saw beside those timings. No timing is asserted beyond that
agreement: a phase the recorder saw happened inside the CRI call that caused it,
give or take TOL_MS.
"""

from __future__ import annotations

import threading
import time

import pytest
from kernelutil import CGROUP_ROOT, require

from nodetape import api
from nodetape.recorder.loop import Recorder, RecordOptions
from nodetape.recorder.source import RecordContext

pytestmark = pytest.mark.kernel

SOURCES = ["cgroup", "samples", "proc", "net", "runtime", "lineage", "cgroup-tp", "syscalls"]
INTERVAL_NS = 250_000_000
TOL_MS = 10.0  # event timestamps: inotify's reader thread and eBPF are within ms of the kernel's change


def _record(out, state_dir, workload) -> dict:
    ctx = RecordContext(cgroup_root=CGROUP_ROOT, interval_ns=INTERVAL_NS, options={"runtime_state": [str(state_dir)]})
    ready = threading.Event()
    rec = Recorder(RecordOptions(out=out, sources=SOURCES, ctx=ctx, duration_ns=120_000_000_000,
                                 tick_ns=50_000_000, progress=lambda r: ready.set()))
    errors = []

    def run():
        try:
            if ready.wait(60):
                workload()
        except Exception as e:  # noqa: BLE001 - raised again in the test's thread
            errors.append(e)
        finally:
            time.sleep(0.6)
            rec.request_stop()

    th = threading.Thread(target=run)
    th.start()
    try:
        manifest = rec.run()
    finally:
        th.join()
    assert not errors, errors
    for name in SOURCES:
        st = manifest["sources"][name]
        require(st["status"] != "unavailable", f"source {name} unavailable here: {st.get('reason')}")
    return manifest


@pytest.fixture(scope="module")
def cri_tape(tmp_path_factory):
    from nodetape import cri
    from nodetape.cri import ContainerSpec, CriError, CriHarness, PodSpec
    from nodetape.cri.cleanup import residue

    why = cri.missing()
    require(why is None, f"CRI harness cannot run: {why}")
    good = PodSpec("good", init_containers=[ContainerSpec("init", ["/bin/sh", "-c", "sleep 0.2"])],
                   containers=[ContainerSpec("app", ["/bin/sh", "-c", "while :; do :; done"], cpu_quota_us=20_000,
                                             memory_limit_bytes=64 << 20)])
    broken = PodSpec("broken", containers=[ContainerSpec("app", ["/no/such/command"])])
    out = tmp_path_factory.mktemp("cri") / "tape"
    runs = {}
    with CriHarness(CGROUP_ROOT) as h:
        base, address = h.ctd.base, h.ctd.address

        def workload():
            runs["good"] = h.run_pod(good)
            time.sleep(1.0)
            try:
                h.run_pod(broken)
            except CriError as e:
                runs["broken_error"] = str(e)
            runs["broken"] = h.runs[-1]
            time.sleep(0.5)
            h.teardown(runs["good"])
            h.teardown(runs["broken"])

        _record(out, h.state_dir, workload)
    assert residue(base, address, CGROUP_ROOT, [good.cgroup_parent, broken.cgroup_parent]) == []
    return out, runs


def test_containers_names_the_sandbox_and_both_containers(cri_tape):
    tape, runs = cri_tape
    good = runs["good"]
    rows = api.open(tape).sql("SELECT * FROM containers WHERE pod_name = 'good' ORDER BY ts_ns, seq").to_pylist()
    got = {(r["container_type"], r["container_name"], r["container_id"]) for r in rows}
    assert got == {("sandbox", None, good.sandbox_id), ("container", "init", good.container_ids["init"]),
                   ("container", "app", good.container_ids["app"])}
    assert {(r["pod_namespace"], r["pod_uid"], r["sandbox_id"], r["runtime"]) for r in rows} == {
        ("default", good.spec.uid, good.sandbox_id, "containerd")}
    assert all(r["cgroup_path"].endswith(r["container_id"]) for r in rows)


def test_pod_births_shows_every_phase_in_order(cri_tape):
    tape, runs = cri_tape
    good = runs["good"]
    rows = [r for r in api.open(tape).query("pod_births").to_pylist() if r["pod_uid"] == good.spec.uid]
    assert {(r["pod_namespace"], r["pod_name"]) for r in rows} == {("default", "good")}
    first = {}
    for r in rows:
        first.setdefault((r["container_name"] or (r["container_id"] and "sandbox") or "pod", r["stage"]), r["ts"])
    order = [("pod", "cgroup_created"), ("sandbox", "sandbox_created"), ("sandbox", "pause_exec"),
             ("init", "cgroup_created"), ("init", "exec"), ("app", "cgroup_created"), ("app", "exec")]
    missing = [k for k in order + [("pod", "network_ready"), ("init", "first_syscalls"), ("app", "first_syscalls")]
               if k not in first]
    assert not missing, (missing, sorted(first))
    times = [first[k] for k in order]
    assert times == sorted(times), list(zip(order, times))
    # containerd wires the network during RunPodSandbox, before the first container
    assert first[("pod", "cgroup_created")] <= first[("pod", "network_ready")] <= first[("init", "cgroup_created")]


def _window(run, method, target, origin):
    """(earliest, latest) ms after origin.start at which something inside that call can have happened."""
    mk = run.call("mkdir pod cgroup", "pod")
    c = run.call(method, target)
    return (c.start_ns - mk.end_ns) / 1e6, (c.end_ns - mk.start_ns) / 1e6


def test_pod_startup_agrees_with_the_cri_calls(cri_tape):
    tape, runs = cri_tape
    good = runs["good"]
    rows = [r for r in api.open(tape).query("pod_startup").to_pylist() if r["pod_uid"] == good.spec.uid]
    assert len(rows) == 1
    r = rows[0]
    assert (r["pod_name"], r["pod_namespace"], r["containers"]) == ("good", "default", 2)
    checks = {
        "sandbox_ms": _window(good, "RunPodSandbox", "sandbox", None),
        "first_exec_ms": _window(good, "StartContainer", "init", None),
        "total_ms": _window(good, "StartContainer", "app", None),
    }
    for col, (lo, hi) in checks.items():
        assert lo - TOL_MS <= r[col] <= hi + TOL_MS, (col, r[col], lo, hi)
    # CNI runs inside RunPodSandbox; the net source hears of the veth from rtnetlink at once
    lo, hi = _window(good, "RunPodSandbox", "sandbox", None)
    assert lo - TOL_MS <= r["network_ms"] <= hi + TOL_MS, (r["network_ms"], lo, hi)
    print("harness:", [(c.method, c.target, round(c.ms, 1)) for c in good.calls])
    print("pod_startup:", r)


def test_broken_pod_is_stuck_at_its_app_container(cri_tape):
    tape, runs = cri_tape
    broken = runs["broken"]
    assert "StartContainer (app)" in runs["broken_error"]
    rows = api.open(tape).query("pod_stuck").to_pylist()
    assert [r["pod_uid"] for r in rows] == [broken.spec.uid], rows
    r = rows[0]
    assert r["pod_name"] == "broken"
    stage, _, who = r["last_stage"].partition(" (")
    assert who == "app)" and stage in ("cgroup_created", "process_attached", "populated"), r
    assert r["waiting_ms"] > 0
    births = {x["stage"] for x in api.open(tape).query("pod_births").to_pylist()
              if x["pod_uid"] == broken.spec.uid and x["container_name"] == "app"}
    assert "exec" not in births and stage in births
