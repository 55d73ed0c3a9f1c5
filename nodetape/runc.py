"""Start real containers with runc: a busybox rootfs and a kubelet-style cgroupsPath.

Used by kernel tests and `nodetape demo`. A container here is what a kubelet
would make with the cgroupfs driver: cgroupsPath /kubepods/<qos>/pod<uid>/<id>,
an optional CPU quota, and a busybox shell as its process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

BUSYBOX = "/bin/busybox"


def have_runc() -> bool:
    return shutil.which("runc") is not None and os.path.exists(BUSYBOX)


def build_rootfs(bundle: Path) -> Path:
    """bundle/rootfs with a static busybox and its applet links (sh, sleep, ...)."""
    rootfs = bundle / "rootfs"
    (rootfs / "bin").mkdir(parents=True, exist_ok=True)
    for d in ("proc", "sys", "dev", "tmp", "etc"):
        (rootfs / d).mkdir(exist_ok=True)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in ("sh", "sleep", "cat", "ls", "true"):
        link = rootfs / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    return rootfs


@dataclass
class Container:
    bundle: Path
    container_id: str = field(default_factory=lambda: uuid.uuid4().hex + uuid.uuid4().hex)
    pod_uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    qos: str = "burstable"  # guaranteed -> /kubepods/pod<uid>/<id>
    args: list[str] = field(default_factory=lambda: ["/bin/sh", "-c", "while :; do :; done"])
    cpu_quota_us: int | None = None
    cpu_period_us: int = 100_000
    proc: subprocess.Popen | None = None

    @property
    def cgroups_path(self) -> str:
        qos = "" if self.qos == "guaranteed" else f"/{self.qos}"
        return f"/kubepods{qos}/pod{self.pod_uid}/{self.container_id}"

    def write_config(self) -> None:
        build_rootfs(self.bundle)
        cfg_path = self.bundle / "config.json"
        if cfg_path.exists():
            cfg_path.unlink()
        subprocess.run(["runc", "spec", "--bundle", str(self.bundle)], check=True)
        cfg = json.loads(cfg_path.read_text())
        cfg["process"]["terminal"] = False
        cfg["process"]["args"] = self.args
        cfg["root"]["readonly"] = True
        linux = cfg.setdefault("linux", {})
        linux["cgroupsPath"] = self.cgroups_path
        res = linux.setdefault("resources", {})
        if self.cpu_quota_us is not None:
            res["cpu"] = {"quota": self.cpu_quota_us, "period": self.cpu_period_us}
        cfg_path.write_text(json.dumps(cfg, indent=2))

    def start(self) -> None:
        """Start it in the background (runc run, no terminal); returns when runc has created it."""
        self.write_config()
        self.proc = subprocess.Popen(
            ["runc", "run", "--bundle", str(self.bundle), self.container_id],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            st = self.state()
            if st and st.get("status") == "running":
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"runc run failed: {self.proc.stderr.read().decode().strip()}")
            time.sleep(0.02)
        raise RuntimeError("runc run: container did not start within 10 s")

    def state(self) -> dict | None:
        r = subprocess.run(["runc", "state", self.container_id], capture_output=True, text=True)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def stop(self) -> None:
        """Kill and delete the container (idempotent); runc removes its cgroups."""
        subprocess.run(["runc", "kill", self.container_id, "KILL"], capture_output=True)
        if self.proc is not None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            if self.proc.stderr:
                self.proc.stderr.close()
        subprocess.run(["runc", "delete", "-f", self.container_id], capture_output=True)

    def __enter__(self) -> Container:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def remove_pod_cgroups(cgroup_root: Path, pod_uid: str, qos: str = "burstable") -> None:
    """runc removes the container cgroup but not the pod-level parents it created: remove empty ones."""
    qos_part = "" if qos == "guaranteed" else f"/{qos}"
    for hier in sorted(Path(cgroup_root).iterdir()):
        if hier.is_symlink() or not hier.is_dir():
            continue
        for rel in (f"kubepods{qos_part}/pod{pod_uid}", f"kubepods{qos_part}", "kubepods"):
            d = hier / rel
            try:
                if d.is_dir() and not any(p.is_dir() for p in d.iterdir()):
                    d.rmdir()
            except OSError:
                pass  # not empty (other pods) or busy: leave it
