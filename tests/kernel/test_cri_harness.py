"""The CRI harness on a real containerd: a pod the kubelet's way, and nothing left behind.

Also after SIGTERM or SIGINT in the middle of a pod (the harness runs in a child
process that is signalled once its pod runs).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from kernelutil import CGROUP_ROOT, require

pytestmark = pytest.mark.kernel


def _require_cri():
    from nodetape import cri

    why = cri.missing()
    require(why is None, f"CRI harness cannot run: {why}")


def _pod():
    from nodetape.cri import ContainerSpec, PodSpec

    return PodSpec("harness-test", init_containers=[ContainerSpec("init", ["/bin/true"])],
                   containers=[ContainerSpec("app", ["/bin/sleep", "30"], cpu_quota_us=20_000,
                                             memory_limit_bytes=64 << 20)])


def test_pod_runs_the_kubelet_way_and_leaves_nothing():
    _require_cri()
    from nodetape.cri import CriHarness
    from nodetape.cri.cleanup import residue

    spec = _pod()
    with CriHarness() as h:
        base, address = h.ctd.base, h.ctd.address
        run = h.run_pod(spec)
        methods = [(c.method, c.target) for c in run.calls]
        assert methods == [("mkdir pod cgroup", "pod"), ("RunPodSandbox", "sandbox"),
                           ("CreateContainer", "init"), ("StartContainer", "init"), ("wait exited", "init"),
                           ("CreateContainer", "app"), ("StartContainer", "app")]
        assert all(c.ok and c.end_ns >= c.start_ns for c in run.calls)
        app = json.loads((h.task_dir / run.container_ids["app"] / "config.json").read_text())
        assert app["linux"]["cgroupsPath"] == f"{spec.cgroup_parent}/{run.container_ids['app']}"
        assert app["linux"]["resources"]["cpu"]["quota"] == 20_000
        assert app["annotations"]["io.kubernetes.cri.container-name"] == "app"
        sandbox = json.loads((h.task_dir / run.sandbox_id / "config.json").read_text())
        netns = [n["path"] for n in sandbox["linux"]["namespaces"] if n["type"] == "network"]
        assert netns and netns[0].startswith(str(base))  # private: under our state folder
        quota = Path(CGROUP_ROOT, "cpu", spec.cgroup_parent.lstrip("/"), run.container_ids["app"], "cpu.cfs_quota_us")
        assert quota.read_text().strip() == "20000"
        h.teardown(run)
        assert [c.method for c in run.calls[-2:]] == ["StopPodSandbox", "RemovePodSandbox"]
    assert residue(base, address, CGROUP_ROOT, [spec.cgroup_parent]) == []


CHILD = textwrap.dedent("""
    import sys, time
    from nodetape.cri import CriHarness, ContainerSpec, PodSpec
    spec = PodSpec("interrupted", containers=[ContainerSpec("app", ["/bin/sleep", "60"])])
    with CriHarness() as h:
        h.run_pod(spec)
        print(h.ctd.base, h.ctd.address, spec.cgroup_parent, flush=True)
        time.sleep(60)
""")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_interrupted_harness_leaves_nothing(sig):
    _require_cri()
    from nodetape.cri.cleanup import residue

    p = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline().split()
        assert len(line) == 3, p.stderr.read() if p.poll() is not None else line
        base, address, parent = Path(line[0]), line[1], line[2]
        assert residue(base, address, CGROUP_ROOT, [parent]), "the pod should be running now"
        os.kill(p.pid, sig)
        p.wait(60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert residue(base, address, CGROUP_ROOT, [parent]) == []


def test_a_killed_harness_is_swept_by_the_next_one():
    """SIGKILL leaves everything running; the next harness removes it before it starts."""
    _require_cri()
    from nodetape.cri import CriHarness
    from nodetape.cri.cleanup import residue

    p = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline().split()
        assert len(line) == 3, p.stderr.read() if p.poll() is not None else line
        base, address, parent = Path(line[0]), line[1], line[2]
        p.kill()
        p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert residue(base, address, CGROUP_ROOT, [parent]), "SIGKILL cannot clean up"
    with CriHarness():
        assert residue(base, address, CGROUP_ROOT, [parent]) == []
    assert not Path("/run/containerd/s").exists() or any(Path("/run/containerd/s").iterdir())
