"""Leave nothing behind: processes, cgroups, mounts, network namespaces, CNI state, the bridge.

Called after the CRI teardown (StopPodSandbox, RemovePodSandbox) and after
containerd stopped, and also when any of those failed or were interrupted,
so every step works from what is on disk and in the kernel, never from the
daemon, and touches only what carries our names: processes whose command
line names our socket, cgroups of our pods, mounts beneath our folder, the
shim sockets and CNI cache entries named after our ids, our bridge.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from . import daemon

_MNT_DETACH = 2
SHIM_SOCKETS = Path("/run/containerd/s")
CNI_RESULTS = Path("/var/lib/cni/results")


def pids_naming(base: Path) -> list[int]:
    """Processes whose command line names our folder: containerd (--config), its shims (-address)."""
    prefix = str(base).rstrip("/") + "/"
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            argv = Path(f"/proc/{d}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and b"containerd" in argv[0] and any(a.startswith(prefix.encode()) for a in argv[1:]):
            out.append(int(d))
    return out


def kill_all_naming(base: Path) -> None:
    """Kill them until none is left (a dying containerd may still have started a shim)."""
    for _ in range(5):
        pids = pids_naming(base)
        if not pids:
            return
        kill_pids(pids)


def kill_pids(pids: list[int], wait_s: float = 5.0) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + wait_s
    for pid in pids:
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            try:
                if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
                    break  # a zombie whose parent is gone soon too
            except OSError:
                break
            time.sleep(0.01)


def _cgroup_procs(d: Path) -> list[int]:
    pids = []
    for f in d.rglob("cgroup.procs"):
        try:
            pids += [int(x) for x in f.read_text().split()]
        except (OSError, ValueError):
            pass
    return pids


def remove_cgroup_tree(d: Path) -> None:
    """Kill what runs in d and below, then remove the directories, leaves first."""
    if not d.is_dir():
        return
    kill_pids(sorted(set(_cgroup_procs(d))))
    dirs = sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [d]
    for p in dirs:
        for _ in range(50):  # a cgroup is busy for a moment after its last task exited
            try:
                p.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)


def pod_cgroup_dirs(cgroup_root: Path, cgroup_parent: str) -> list[Path]:
    """The pod cgroup in every hierarchy (named v1 hierarchies too)."""
    out = []
    for h in sorted(Path(cgroup_root).iterdir()):
        if h.is_dir() and not h.is_symlink():
            out.append(h / cgroup_parent.lstrip("/"))
    return out


def remove_empty_parents(cgroup_root: Path, cgroup_parent: str) -> None:
    """kubepods/<qos> and kubepods, when we made them and nobody else uses them (kubelet's are never empty)."""
    parts = cgroup_parent.strip("/").split("/")[:-1]
    for i in range(len(parts), 0, -1):
        for h in pod_cgroup_dirs(cgroup_root, "/".join(parts[:i])):
            try:
                if h.is_dir() and not any(p.is_dir() for p in h.iterdir()):
                    h.rmdir()
            except OSError:
                pass


def unmount_beneath(base: Path) -> None:
    """Detach every mount at or below base (overlay rootfs, shm, netns bind mounts), deepest first."""
    libc = ctypes.CDLL(None, use_errno=True)
    prefix = str(base).rstrip("/") + "/"
    for _ in range(3):  # a detach can reveal a mount stacked beneath it
        points = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            mp = line.split()[4].replace("\\040", " ")
            if mp.startswith(prefix):
                points.append(mp)
        if not points:
            return
        for mp in sorted(points, key=len, reverse=True):
            libc.umount2(mp.encode(), _MNT_DETACH)


def shim_socket_name(address: str, container_id: str) -> str:
    """containerd 1.6 runtime/v2/shim SocketAddress: sha256 of address/namespace/id, under /run/containerd/s."""
    return hashlib.sha256(os.path.join(address, daemon.NAMESPACE, container_id).encode()).hexdigest()


def remove_shim_sockets(address: str, ids: set[str]) -> None:
    for cid in ids:
        for suffix in ("", ".sock"):
            try:
                (SHIM_SOCKETS / (shim_socket_name(address, cid) + suffix)).unlink()
            except OSError:
                pass


def remove_cni_cache(sandbox_ids: set[str]) -> None:
    """libcni caches each ADD's result as <network>-<sandbox id>-<ifname>; DEL removes it, a crash does not."""
    try:
        names = os.listdir(CNI_RESULTS)
    except OSError:
        return
    for n in names:
        if n.startswith((f"{daemon.NETWORK}-", "cni-loopback-")) and any(f"-{sid}-" in n for sid in sandbox_ids):
            try:
                (CNI_RESULTS / n).unlink()
            except OSError:
                pass


def remove_dirs_if_empty(paths: list[Path]) -> None:
    """Folders someone made for containerd or CNI (we note beforehand which existed), when empty."""
    for p in paths:
        try:
            p.rmdir()
        except OSError:
            pass


def delete_bridge() -> None:
    if Path(f"/sys/class/net/{daemon.BRIDGE}").exists():
        subprocess.run(["ip", "link", "delete", daemon.BRIDGE], capture_output=True)


def known_ids(ctd: daemon.Containerd) -> set[str]:
    """Every task id containerd ran (their bundles sit in the task folder until deleted)."""
    try:
        return set(os.listdir(ctd.task_dir))
    except OSError:
        return set()


def remove_base(base: Path) -> None:
    unmount_beneath(base)
    shutil.rmtree(base, ignore_errors=True)


def residue(base: Path, address: str, cgroup_root: Path, pod_cgroup_parents: list[str]) -> list[str]:
    """What a harness left behind (empty when clean): for tests and for the harness's own check."""
    out = []
    if base.exists():
        out.append(f"folder {base}")
    out += [f"process {pid}" for pid in pids_naming(base)]
    prefix = str(base).rstrip("/") + "/"
    out += [f"mount {line.split()[4]}" for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(prefix)]
    for parent in pod_cgroup_parents:
        out += [f"cgroup {d}" for d in pod_cgroup_dirs(cgroup_root, parent) if d.exists()]
    if Path(f"/sys/class/net/{daemon.BRIDGE}").exists():
        out.append(f"bridge {daemon.BRIDGE}")
    try:
        out += [f"cni cache {n}" for n in os.listdir(CNI_RESULTS) if n.startswith(f"{daemon.NETWORK}-")]
    except OSError:
        pass
    return out


def _cgroup_parents_in(task_dir: Path) -> set[str]:
    """The pod cgroups of the containers a (dead) containerd ran, from their bundles' cgroupsPath."""
    import json

    parents = set()
    for cfg in task_dir.glob("*/config.json"):
        try:
            path = json.loads(cfg.read_text())["linux"]["cgroupsPath"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(path, str) and path.startswith("/kubepods/") and ".." not in path:
            parents.add(path.rsplit("/", 1)[0])
    return parents


def sweep_stale(cgroup_root: Path) -> list[Path]:
    """Folders of harnesses whose process died without cleaning up (SIGKILL): remove what they left.

    A harness's folder is /run/nt-cri-<pid>-<random>; one whose pid is gone is
    stale. Its shims name its socket, its pods' cgroups are in its bundles.
    """
    swept = []
    for base in Path("/run").glob("nt-cri-*-*"):
        pid = base.name.split("-")[2]
        if not pid.isdigit() or Path(f"/proc/{pid}").exists():
            continue
        address = str(base / "containerd.sock")
        kill_all_naming(base)
        task_dir = base / "state" / "io.containerd.runtime.v2.task" / daemon.NAMESPACE
        ids = set(os.listdir(task_dir)) if task_dir.is_dir() else set()
        for parent in _cgroup_parents_in(task_dir):
            for d in pod_cgroup_dirs(cgroup_root, parent):
                remove_cgroup_tree(d)
            remove_empty_parents(cgroup_root, parent)
        remove_shim_sockets(address, ids)
        remove_cni_cache(ids)
        remove_base(base)
        swept.append(base)
    if swept and not any(_may_use_bridge(b) for b in Path("/run").glob("nt-cri-*")):
        delete_bridge()
        # whether the dead harness made these is unknown now; empty, they hold nothing of anyone's
        remove_dirs_if_empty([SHIM_SOCKETS, SHIM_SOCKETS.parent, CNI_RESULTS, CNI_RESULTS.parent])
    return swept


def _may_use_bridge(base: Path) -> bool:
    """A live harness that has run a pod (ours, just made, has not): its pods are on the bridge."""
    pid = base.name.split("-")[2] if base.name.count("-") >= 3 else ""
    if pid == str(os.getpid()):
        tasks = base / "state" / "io.containerd.runtime.v2.task" / daemon.NAMESPACE
        return tasks.is_dir() and any(tasks.iterdir())
    return not pid.isdigit() or Path(f"/proc/{pid}").exists()
