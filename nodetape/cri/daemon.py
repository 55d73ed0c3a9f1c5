"""A private containerd: its own root, state, socket, CNI network and images.

Nothing is shared with a containerd the node may run: --root, --state and the
socket live in one folder of ours (BASE), the CRI plugin's CNI configuration
and IPAM state too, and the bridge has a name of ours on a private subnet.
The CRI plugin is configured the way this machine needs (DESIGN.md):
`restrict_oom_score_adj = true` (no CAP_SYS_RESOURCE here: the sandbox's
oom_score_adj -998 would make runc fail), the cgroupfs driver
(SystemdCgroup = false), and network namespaces under its state folder
(`netns_mounts_under_state_dir`), so they are ours to find and remove.

What containerd cannot put under BASE: its shims' sockets, always under
/run/containerd/s/ (named after sha256(address/namespace/id)), and the libcni
result cache under /var/lib/cni/results (named <network>-<sandbox id>-<if>).
cleanup.py removes exactly those names.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from . import image

NAMESPACE = "k8s.io"  # the CRI plugin's containerd namespace
SANDBOX_IMAGE = "nodetape.local/pause:1"
APP_IMAGE = "nodetape.local/busybox:1"
BRIDGE = "nt-cri0"
NETWORK = "nodetape-cri"
SUBNET = "10.254.77.0/24"
CNI_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
CNI_PLUGINS = ("bridge", "host-local", "loopback")


def missing() -> str | None:
    """Why a private containerd cannot run here (None when it can)."""
    for tool in ("containerd", "ctr", "runc", "containerd-shim-runc-v2", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} not found (apt-get install containerd containernetworking-plugins runc)"
    if cni_bin_dir() is None:
        return "CNI plugins bridge, host-local, loopback not found (apt-get install containernetworking-plugins)"
    if not os.path.exists(image.BUSYBOX):
        return f"{image.BUSYBOX} not found (apt-get install busybox-static)"
    if os.geteuid() != 0:
        return "needs root (containerd makes cgroups, mounts and network namespaces)"
    try:
        import grpc  # noqa: F401, PLC0415
        import grpc_tools  # noqa: F401, PLC0415
    except ImportError as e:
        return f"missing Python module {e.name} (pip install grpcio grpcio-tools protobuf)"
    return None


def cni_bin_dir() -> str | None:
    for d in CNI_BIN_DIRS:
        if all(os.access(f"{d}/{p}", os.X_OK) for p in CNI_PLUGINS):
            return d
    return None


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return json.dumps(str(v))  # a TOML basic string is a JSON string for our values


def config_toml(base: Path) -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    sections = {
        "": {"version": 2, "root": base / "root", "state": base / "state", "oom_score": 0},
        "grpc": {"address": base / "containerd.sock"},
        "ttrpc": {"address": base / "containerd.sock.ttrpc"},
        "debug": {"address": ""},
        "metrics": {"address": ""},
        'plugins."io.containerd.internal.v1.opt"': {"path": base / "opt"},
        cri: {"sandbox_image": SANDBOX_IMAGE, "restrict_oom_score_adj": True, "enable_selinux": False,
              "disable_tcp_service": True, "stream_server_address": "127.0.0.1", "stream_server_port": "0",
              "netns_mounts_under_state_dir": True, "systemd_cgroup": False},
        f"{cri}.containerd": {"snapshotter": "overlayfs", "default_runtime_name": "runc"},
        f"{cri}.containerd.runtimes.runc": {"runtime_type": "io.containerd.runc.v2"},
        # runc's own state (--root) under ours too, not /run/containerd/runc
        f"{cri}.containerd.runtimes.runc.options": {"SystemdCgroup": False, "Root": base / "runc"},
        f"{cri}.cni": {"bin_dir": cni_bin_dir() or CNI_BIN_DIRS[0], "conf_dir": base / "cni" / "net.d",
                       "max_conf_num": 1},
    }
    lines = [f'disabled_plugins = {json.dumps(["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"])}']
    for name, values in sections.items():
        if name:
            lines.append(f"\n[{name}]")
        lines += [f"{k} = {_toml(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def cni_conflist(base: Path) -> dict:
    """bridge + host-local + loopback, no masquerade and no gateway: no iptables rules to undo."""
    return {
        "cniVersion": "1.0.0", "name": NETWORK,
        "plugins": [
            {"type": "bridge", "bridge": BRIDGE, "isGateway": False, "ipMasq": False, "hairpinMode": False,
             "ipam": {"type": "host-local", "dataDir": str(base / "cni" / "ipam"),
                      "ranges": [[{"subnet": SUBNET}]]}},
            {"type": "loopback"},
        ],
    }


class Containerd:
    """A private containerd process; start() returns when its CRI socket answers."""

    def __init__(self, base: Path | None = None):
        if base is not None:
            base.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.base = base or Path(tempfile.mkdtemp(prefix=f"nt-cri-{os.getpid()}-", dir="/run"))
        # the state folder exists from here on: a recorder told to read it (--runtime-state) can start first
        (self.base / "state").mkdir(exist_ok=True)
        self.address = str(self.base / "containerd.sock")
        self.state = self.base / "state"
        self.root = self.base / "root"
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def task_dir(self) -> Path:
        """Where each task's OCI spec (config.json) lives: what the runtime source reads."""
        return self.state / "io.containerd.runtime.v2.task" / NAMESPACE

    def write_config(self) -> Path:
        (self.base / "cni" / "net.d").mkdir(parents=True, exist_ok=True)
        (self.base / "cni" / "net.d" / "10-nodetape.conflist").write_text(json.dumps(cni_conflist(self.base), indent=2))
        cfg = self.base / "config.toml"
        cfg.write_text(config_toml(self.base))
        return cfg

    def start(self, timeout: float = 20.0) -> None:
        cfg = self.write_config()
        self._log = open(self.base / "containerd.log", "wb")  # noqa: SIM115 - kept open while it runs
        self.proc = subprocess.Popen(["containerd", "--config", str(cfg)], stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"containerd exited ({self.proc.returncode}): {self.log_tail()}")
            if self._answers():
                return
            time.sleep(0.05)
        raise RuntimeError(f"containerd did not answer on {self.address} within {timeout:g}s: {self.log_tail()}")

    def _answers(self) -> bool:
        if not os.path.exists(self.address):
            return False
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(self.address)
                return True
            except OSError:
                return False

    def log_tail(self, n: int = 5) -> str:
        try:
            lines = (self.base / "containerd.log").read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(lines[-n:])

    def ctr(self, *args: str, data: bytes | None = None, timeout: float = 60) -> str:
        r = subprocess.run(["ctr", "--address", self.address, "-n", NAMESPACE, *args], input=data,
                           capture_output=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args[:2])} failed: {r.stderr.decode(errors='replace').strip()}")
        return r.stdout.decode(errors="replace")

    def import_images(self) -> None:
        """The busybox image, tagged as the sandbox (pause) image and as the app image."""
        archive = self.base / "image.tar"
        archive.write_bytes(image.oci_archive([SANDBOX_IMAGE, APP_IMAGE]))
        self.ctr("images", "import", str(archive))
        archive.unlink()
        names = self.ctr("images", "ls", "-q").split()
        for want in (SANDBOX_IMAGE, APP_IMAGE):
            if want not in names:
                raise RuntimeError(f"ctr images import: {want} not in {names}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
