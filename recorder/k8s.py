"""Kubernetes identity of a cgroup, from its path alone.

The kubelet names cgroups after the pod's QoS class and UID, and the container
runtime names the container's cgroup after its id, so a path is enough to tell
which pod and container a cgroup belongs to, on every node, offline. Shapes
handled (both cgroup drivers, any prefix such as a custom kubelet cgroupRoot):

systemd driver (pod UID with '_' instead of '-'):
    kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope
    kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid>.slice/crio-<id>.scope
    kubepods.slice/kubepods-pod<uid>.slice/docker-<id>.scope          (guaranteed: directly under kubepods)
    kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod<uid>.slice/...   (cgroupRoot=/kubelet)
    .../kubepods-burstable-pod<uid>.slice:cri-containerd:<id>          (containerd, systemd cgroup, v1 quirk)
cgroupfs driver:
    kubepods/burstable/pod<uid>/<id>     (runtime not visible in the path -> None)
    kubepods/pod<uid>/<id>               (guaranteed)
    kubepods/besteffort/pod<uid>/crio-<id>
    kubepods/burstable/pod<uid>/test1    (any child of a pod is its container: ids need not be hex)

A cgroup outside a kubepods tree (system.slice/docker-<id>.scope, user.slice)
gets all None: only the kubelet's tree says "this is a pod".
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple


class K8sIdentity(NamedTuple):
    pod_uid: str | None = None
    container_id: str | None = None
    qos_class: str | None = None
    runtime: str | None = None


NONE = K8sIdentity()

# scope/dir prefix -> runtime name (the names the kubelet and runtimes use)
_RUNTIME_PREFIXES = (
    ("cri-containerd-", "containerd"),
    ("crio-conmon-", "cri-o"),  # CRI-O's conmon monitor, a sibling of the container scope
    ("crio-", "cri-o"),
    ("docker-", "docker"),
)
_COLON_RUNTIMES = {"cri-containerd": "containerd", "crio": "cri-o", "docker": "docker"}

# systemd slices: '<anything->kubepods[-qos][-pod<uid>].slice'
_SLICE = re.compile(r"^(?:.*-)?kubepods(?:-(burstable|besteffort))?(?:-pod([0-9a-fA-F_\-]+))?\.slice$")
_CGROUPFS_POD = re.compile(r"^pod([0-9a-fA-F\-_]+)$")
_CONTAINER_ID = re.compile(r"^[0-9a-fA-F]{12,}$")


def pod_uid_of(raw: str) -> str:
    """The canonical pod UID: lower case, '-' (the systemd driver writes '_', users may paste upper case)."""
    return raw.replace("_", "-").lower()


def _container(segment: str) -> tuple[str | None, str | None]:
    """(container_id, runtime) of the segment under a pod cgroup, if it names a container."""
    name = segment[:-6] if segment.endswith(".scope") else segment
    for prefix, runtime in _RUNTIME_PREFIXES:
        if name.startswith(prefix):
            cid = name[len(prefix):]
            return (cid or None), runtime
    if _CONTAINER_ID.match(name):
        return name.lower(), None
    # any other child of a pod cgroup is still a container of that pod, named by its runtime
    # (runc run test1, a sandbox named by hand): kept as it is, so rows of two containers never merge
    return (name or None), None


# bounded: cgroup churn makes every path new; the live tree is the hot set
@lru_cache(maxsize=4096)
def identity(cgroup_path: str) -> K8sIdentity:
    """K8sIdentity of a cgroup path (relative to its hierarchy root or absolute); all None outside Kubernetes."""
    parts = [p for p in cgroup_path.split("/") if p]
    # find the kubepods root segment; anything above it is a prefix (kubelet cgroupRoot, hierarchy mount)
    for i, seg in enumerate(parts):
        if seg == "kubepods" or seg.endswith("kubepods.slice"):
            rest = parts[i + 1:]
            return _systemd(rest) if seg.endswith(".slice") else _cgroupfs(rest)
        # containerd with systemd cgroups on some v1 setups: the runc cgroupsPath is taken literally
        if ".slice:" in seg:
            slice_, _, tail = seg.partition(":")
            m = _SLICE.match(slice_)
            if m and m.group(2):
                prefix, _, cid = tail.partition(":")
                runtime = _COLON_RUNTIMES.get(prefix)
                return K8sIdentity(pod_uid_of(m.group(2)), cid or None, m.group(1) or "guaranteed", runtime)
    return NONE


def _systemd(rest: list[str]) -> K8sIdentity:
    qos = None
    for j, seg in enumerate(rest):
        m = _SLICE.match(seg)
        if not m:
            break
        if m.group(1):
            qos = m.group(1)
        if m.group(2):
            uid = pod_uid_of(m.group(2))
            qos = qos or "guaranteed"
            cid, runtime = _container(rest[j + 1]) if j + 1 < len(rest) else (None, None)
            return K8sIdentity(uid, cid, qos, runtime)
    return K8sIdentity(None, None, qos, None)


def _cgroupfs(rest: list[str]) -> K8sIdentity:
    qos = None
    if rest and rest[0] in ("burstable", "besteffort"):
        qos, rest = rest[0], rest[1:]
    if rest:
        m = _CGROUPFS_POD.match(rest[0])
        if m:
            cid, runtime = _container(rest[1]) if len(rest) > 1 else (None, None)
            return K8sIdentity(pod_uid_of(m.group(1)), cid, qos or "guaranteed", runtime)
    return K8sIdentity(None, None, qos, None)


def identity_columns(paths) -> dict[str, list]:
    """The four identity columns for a sequence of cgroup paths (batch form of identity())."""
    idents = [identity(p) for p in paths]
    return {field: [getattr(i, field) for i in idents] for field in K8sIdentity._fields}
