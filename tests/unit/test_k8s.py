"""Table-driven tests of the cgroup path -> Kubernetes identity parser, on real path shapes."""

import pytest

from nodetape.recorder.k8s import K8sIdentity, identity

UID = "0f3c2b1a-8d7e-4f6a-9b5c-1d2e3f4a5b6c"
U_ = UID.replace("-", "_")
CID = "4c01db0b339c1e3b8d7c8fbd3a5f2f6c0a1b2c3d4e5f60718293a4b5c6d7e8f9"

CASES = [
    # --- systemd driver, containerd
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{U_}.slice/cri-containerd-{CID}.scope",
     (UID, CID, "burstable", "containerd")),
    (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{U_}.slice/cri-containerd-{CID}.scope",
     (UID, CID, "besteffort", "containerd")),
    (f"/kubepods.slice/kubepods-pod{U_}.slice/cri-containerd-{CID}.scope", (UID, CID, "guaranteed", "containerd")),
    # --- systemd driver, CRI-O (and its conmon scope)
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{U_}.slice/crio-{CID}.scope",
     (UID, CID, "burstable", "cri-o")),
    (f"/kubepods.slice/kubepods-pod{U_}.slice/crio-conmon-{CID}.scope", (UID, CID, "guaranteed", "cri-o")),
    (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{U_}.slice/crio-{CID}.scope",
     (UID, CID, "besteffort", "cri-o")),
    # --- systemd driver, docker (dockershim / cri-dockerd)
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{U_}.slice/docker-{CID}.scope",
     (UID, CID, "burstable", "docker")),
    (f"/kubepods.slice/kubepods-pod{U_}.slice/docker-{CID}.scope", (UID, CID, "guaranteed", "docker")),
    (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{U_}.slice/docker-{CID}.scope",
     (UID, CID, "besteffort", "docker")),
    # --- pod-level and QoS-level cgroups
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{U_}.slice", (UID, None, "burstable", None)),
    (f"/kubepods.slice/kubepods-pod{U_}.slice", (UID, None, "guaranteed", None)),
    ("/kubepods.slice/kubepods-besteffort.slice", (None, None, "besteffort", None)),
    ("/kubepods.slice", (None, None, None, None)),
    # --- custom kubelet cgroupRoot and hierarchy-absolute paths
    (f"/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod{U_}.slice/cri-containerd-{CID}.scope",
     (UID, CID, "burstable", "containerd")),
    (f"/sys/fs/cgroup/kubepods.slice/kubepods-pod{U_}.slice/crio-{CID}.scope", (UID, CID, "guaranteed", "cri-o")),
    # containerd with systemd cgroups on v1: the runc cgroupsPath literal
    (f"/system.slice/containerd.service/kubepods-burstable-pod{U_}.slice:cri-containerd:{CID}",
     (UID, CID, "burstable", "containerd")),
    # --- cgroupfs driver: runtime is not in the path
    (f"/kubepods/burstable/pod{UID}/{CID}", (UID, CID, "burstable", None)),
    (f"/kubepods/besteffort/pod{UID}/{CID}", (UID, CID, "besteffort", None)),
    (f"/kubepods/pod{UID}/{CID}", (UID, CID, "guaranteed", None)),
    (f"/kubepods/burstable/pod{UID}", (UID, None, "burstable", None)),
    (f"/kubepods/pod{UID}", (UID, None, "guaranteed", None)),
    ("/kubepods/besteffort", (None, None, "besteffort", None)),
    (f"/kubepods/burstable/pod{UID}/crio-{CID}", (UID, CID, "burstable", "cri-o")),
    (f"/kubepods/burstable/pod{UID}/docker-{CID}.scope", (UID, CID, "burstable", "docker")),
    (f"kubepods/burstable/pod{UID}/{CID}", (UID, CID, "burstable", None)),  # no leading slash
    (f"/kubelet/kubepods/burstable/pod{UID}/{CID}", (UID, CID, "burstable", None)),  # cgroupRoot=/kubelet
    (f"/kubepods/burstable/pod{UID.upper()}/{CID.upper()}", (UID, CID, "burstable", None)),
    # any child of a pod is its container, whatever the runtime named it (runc run test1)
    (f"/kubepods/burstable/pod{UID}/test1", (UID, "test1", "burstable", None)),
    (f"/kubepods/pod{UID}/Ctr-A/nested", (UID, "Ctr-A", "guaranteed", None)),
    (f"/kubepods.slice/kubepods-pod{U_}.slice/runc-test1.scope", (UID, "runc-test1", "guaranteed", None)),
    # --- not Kubernetes
    ("/", (None, None, None, None)),
    ("", (None, None, None, None)),
    (f"/system.slice/docker-{CID}.scope", (None, None, None, None)),
    ("/system.slice/containerd.service", (None, None, None, None)),
    ("/user.slice/user-1000.slice/session-3.scope", (None, None, None, None)),
    (f"/docker/{CID}", (None, None, None, None)),
    ("/kubepods-notreally", (None, None, None, None)),
]


@pytest.mark.parametrize(("path", "want"), CASES, ids=[c[0][:80] or "empty" for c in CASES])
def test_identity(path, want):
    assert identity(path) == K8sIdentity(*want)


def test_all_qos_and_runtimes_covered():
    qos = {w[2] for _, w in CASES}
    rts = {w[3] for _, w in CASES}
    assert {"guaranteed", "burstable", "besteffort"} <= qos
    assert {"containerd", "cri-o", "docker"} <= rts


def test_cached():
    p = f"/kubepods/pod{UID}/{CID}"
    assert identity(p) is identity(p)
