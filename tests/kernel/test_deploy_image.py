"""The image deploy/ builds, run through containerd as the DaemonSet's pod spec says, records a pod's birth.

From scratch: deploy/build_image.py makes the OCI image (debootstrap, python3-bpfcc,
headers, the wheel), `ctr images import` loads it into the CRI harness's private
containerd, and deploy/daemonset.yaml's pod template runs through CRI the way the
kubelet would run it (nodetape.cri.kube): host PID and network, every capability
dropped and the listed ones added back, a read-only root, the listed host paths.
Two host paths are mapped for the test: the data folder to a private one (the
tape and the store), /run/containerd to the private containerd's state. Then a
second pod is born, the recorder pod is stopped as the kubelet stops it
(StopContainer with its grace period), and what it pushed to the store is queried.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kernelutil import require

from nodetape import api, cri
from nodetape.cri import ContainerSpec, CriHarness, PodSpec
from nodetape.cri.kube import pod_from_template

pytestmark = pytest.mark.kernel

REPO = Path(__file__).resolve().parents[2]
TAG = "localhost/nodetape:test"
NODE = "node-under-test"


def _wait_recording(tape: Path, timeout_s: float = 240) -> dict:
    """The recorder's manifest once its sources started (eBPF compiles for a few seconds first)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            m = json.loads((tape / "manifest.json").read_text())
            if m.get("sources") and all(s.get("status") != "starting" for s in m["sources"].values()):
                return m
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"the recorder pod wrote no started manifest in {tape} within {timeout_s:.0f}s")


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    require(shutil.which("debootstrap") is not None, "needs debootstrap (./run test installs it)")
    out = Path("/var/tmp") / f"nodetape-image-test-{time.monotonic_ns()}.tar"
    facts = tmp_path_factory.mktemp("image") / "facts.json"
    r = subprocess.run([sys.executable, str(REPO / "deploy" / "build_image.py"), "--out", str(out), "--tag", TAG,
                        "--facts", str(facts)], capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    yield out
    out.unlink(missing_ok=True)


def test_the_daemonset_pod_records_a_cri_pod_birth_and_pushes_it(image, tmp_path):
    require(cri.missing() is None, f"needs containerd and CNI plugins: {cri.missing()}")
    import yaml

    data = tmp_path / "data"
    ds = yaml.safe_load((REPO / "deploy" / "daemonset.yaml").read_text())
    with CriHarness() as h:
        h.ctd.ctr("images", "import", str(image), timeout=900)
        spec = pod_from_template(ds, node_name=NODE, scratch=tmp_path / "scratch", image=TAG,
                                 host_paths={"/var/lib/nodetape": data, "/run/containerd": h.state_dir})
        recorder = h.run_pod(spec)
        manifest = _wait_recording(data / "tape")
        active = {n for n, s in manifest["sources"].items() if s["status"] == "active"}
        assert {"cgroup", "samples", "runtime", "lineage"} <= active, manifest["sources"]
        born = h.run_pod(PodSpec("observed", containers=[ContainerSpec("app", ["/bin/sh", "-c", "sleep 30"])]))
        time.sleep(3)  # a few flushes: the birth is sealed into parts and pushed
        h.teardown(born)
        h.client.stop_container(recorder, "nodetape", grace_s=30)  # SIGTERM: the tape closes, the rest is pushed
        h.teardown(recorder)

    tape = json.loads((data / "tape" / "manifest.json").read_text())
    assert tape["closed"] and tape["host"]["hostname"] == NODE
    rows = api.open(data / "store").query("pod_births").to_pylist()
    mine = [r for r in rows if r["pod_name"] == "observed"]
    assert {r["host"] for r in mine} == {NODE}
    stages = {r["stage"] for r in mine}
    assert {"sandbox_created", "cgroup_created", "exec"} <= stages, stages
    assert {r["container_name"] for r in mine if r["container_name"]} == {"app"}
