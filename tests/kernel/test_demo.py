"""`nodetape demo` on the real kernel: a pod through containerd over CRI (else runc, else a plain
cgroup), its cascade and throttling; clean on SIGINT."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kernelutil import have, require, require_root

pytestmark = pytest.mark.kernel

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _leftover_pod_dirs(pod_uid: str) -> list[Path]:
    return [p for p in CGROUP_ROOT.glob(f"*/kubepods/burstable/pod{pod_uid}") if p.exists()]


def _runc_ids() -> str:
    return subprocess.run(["runc", "list", "-q"], capture_output=True, text=True).stdout


def _cri_leftovers() -> list[str]:
    """What a CRI harness leaves when it does not clean up: its folder under /run, its bridge."""
    from nodetape.cri import daemon

    left = [str(p) for p in Path("/run").glob("nt-cri-*")]
    return left + ([daemon.BRIDGE] if Path(f"/sys/class/net/{daemon.BRIDGE}").exists() else [])


def _require_cri():
    from nodetape import cri

    why = cri.missing()
    require(why is None, f"the demo's CRI path needs containerd: {why}")


def _path_without(tmp: Path, *tools: str) -> str:
    """PATH with the folders holding these tools left out (Debian's /bin is /usr/bin: linked tool by tool)."""
    shim = tmp / "path"
    shim.mkdir()
    keep = []
    for d in os.environ.get("PATH", "").split(":"):
        if d and any((Path(d) / t).exists() for t in tools):
            for entry in Path(d).iterdir():
                if entry.name not in tools and not (shim / entry.name).exists():
                    (shim / entry.name).symlink_to(entry)
        elif d:
            keep.append(d)
    return ":".join([str(shim), *keep])


def test_demo_prints_the_cri_pod_by_name_with_cascade_and_throttling(tmp_path):
    require_root()
    _require_cri()
    out = tmp_path / "demo"
    r = subprocess.run([sys.executable, "-m", "nodetape.cli", "demo", "--out", str(out), "--seconds", "4"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    text = r.stdout
    m = re.search(r"Birth certificate of pod (default/nodetape-demo-[0-9a-f]{6}) \(([0-9a-f-]{36})\)", text)
    assert m, text
    assert f"pod {m.group(1)} running" in text
    cascade = text.split("Birth certificate", 1)[1].split("Throttle timeline", 1)[0]
    for stage in ("cgroup_created", "network_ready", "sandbox_created", "pause_exec", "process_attached", "exec"):
        assert stage in cascade, stage
    assert "(sandbox)" in cascade and "busy " in cascade
    pcts = [float(x) for x in re.findall(r"\s(\d+(?:\.\d+)?)\s+[█·]{20}", text)]
    assert pcts and max(pcts) > 90, text
    assert f"Tape: {out}" in text
    assert not _leftover_pod_dirs(m.group(2)) and not _cri_leftovers()
    assert (out / "manifest.json").exists()


def test_demo_without_containerd_uses_runc(tmp_path):
    require_root()
    require(have("runc") and Path("/bin/busybox").exists(), "needs runc and busybox-static")
    out = tmp_path / "demo"
    r = subprocess.run([sys.executable, "-m", "nodetape.cli", "demo", "--out", str(out), "--seconds", "4"],
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PATH": _path_without(tmp_path, "containerd")})
    assert r.returncode == 0, r.stdout + r.stderr
    text = r.stdout
    assert "not using containerd over CRI: containerd not found" in text and "using runc instead" in text, text
    cascade = text.split("Birth certificate", 1)[1].split("Throttle timeline", 1)[0]
    for stage in ("cgroup_created", "process_attached", "exec"):
        assert stage in cascade, stage
    pcts = [float(x) for x in re.findall(r"\s(\d+(?:\.\d+)?)\s+[█·]{20}", text)]
    assert pcts and max(pcts) > 90, text
    pod_uid = re.search(r"Birth certificate of pod ([0-9a-f-]{36})", text).group(1)
    assert not _leftover_pod_dirs(pod_uid)


def test_demo_interrupted_leaves_nothing_behind(tmp_path):
    require_root()
    _require_cri()
    out = tmp_path / "demo"
    p = subprocess.Popen([sys.executable, "-m", "nodetape.cli", "demo", "--out", str(out), "--seconds", "60"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    pod_uid = container_id = None
    deadline = time.monotonic() + 180
    for line in p.stdout:
        lines.append(line)
        m = re.search(r"pod([0-9a-f-]{36})/([0-9a-f]{64})", line)
        if m:
            pod_uid, container_id = m.groups()
        if "running for" in line or time.monotonic() > deadline:
            break
    assert pod_uid, "".join(lines)
    assert _leftover_pod_dirs(pod_uid), "the container's cgroups should exist while it runs"
    time.sleep(1)
    os.kill(p.pid, signal.SIGINT)
    rest = p.communicate(timeout=120)[0]
    assert p.returncode == 130, "".join(lines) + rest
    assert not _leftover_pod_dirs(pod_uid), "cgroups left behind"
    assert container_id not in _runc_ids(), "container left behind"
    assert not _cri_leftovers(), "CRI harness left things behind"
    # the recorder was stopped cleanly: the tape is closed and readable
    info = subprocess.run([sys.executable, "-m", "nodetape.cli", "info", str(out)], capture_output=True, text=True)
    assert info.returncode == 0 and "NOT CLOSED" not in info.stdout


def test_demo_without_runc_uses_a_plain_cgroup_and_cleans_it(tmp_path):
    """No runc on PATH: the demo says so, throttles a busy child in a plain cgroup at the same
    kubelet-style path, prints the same cascade and timeline, and removes the cgroup."""
    require_root()
    path = _path_without(tmp_path, "runc", "containerd")
    out = tmp_path / "demo"
    r = subprocess.run([sys.executable, "-m", "nodetape.cli", "demo", "--out", str(out), "--seconds", "4"],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "PATH": path})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "not using containerd over CRI" in r.stdout and "runc is not installed" in r.stdout + r.stderr
    cascade = r.stdout.split("Birth certificate", 1)[1].split("Throttle timeline", 1)[0]
    assert "cgroup_created" in cascade and "process_attached" in cascade
    pcts = [float(x) for x in re.findall(r"\s(\d+(?:\.\d+)?)\s+[█·]{20}", r.stdout)]
    assert pcts and max(pcts) > 90, r.stdout
    pod_uid = re.search(r"Birth certificate of pod ([0-9a-f-]{36})", r.stdout).group(1)
    assert not _leftover_pod_dirs(pod_uid)
