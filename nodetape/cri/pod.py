"""The kubelet's sequence over CRI v1, timed call by call.

For one pod: make the pod cgroup (what the kubelet's pod container manager
does with the cgroupfs driver: kubepods/<qos>/pod<uid> in every hierarchy),
RunPodSandbox (cgroup_parent = that cgroup; the runtime wires the pod network
through CNI), then each init container in order (CreateContainer,
StartContainer, wait until it exited, which must be with 0), then each app
container (CreateContainer, StartContainer). Teardown is StopPodSandbox and
RemovePodSandbox, then the pod cgroup goes.

Every call is timed on CLOCK_BOOTTIME, the tape's clock, so a test can put
the harness's own timings beside what the recorder saw.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from nodetape.core.clock import boottime_ns

from . import daemon, stubs

CALL_TIMEOUT_S = 60.0


@dataclass
class Mount:
    """A host folder in the container, as the kubelet passes a hostPath or emptyDir volume."""

    container_path: str
    host_path: str
    readonly: bool = False


@dataclass
class ContainerSpec:
    name: str
    command: list[str]  # empty: the image's entrypoint
    cpu_quota_us: int = 0  # 0: no quota
    cpu_period_us: int = 100_000
    memory_limit_bytes: int = 0  # 0: no limit
    image: str = daemon.APP_IMAGE
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)
    # security context, as a Pod's securityContext maps onto CRI's (None: the runtime's defaults)
    capabilities_add: list[str] = field(default_factory=list)
    capabilities_drop: list[str] = field(default_factory=list)
    readonly_rootfs: bool = False
    no_new_privs: bool = False


@dataclass
class PodSpec:
    name: str
    namespace: str = "default"
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    qos: str = "burstable"  # guaranteed -> /kubepods/pod<uid>
    init_containers: list[ContainerSpec] = field(default_factory=list)
    containers: list[ContainerSpec] = field(default_factory=list)
    host_network: bool = False  # hostNetwork: the node's network namespace, no CNI
    host_pid: bool = False  # hostPID: the node's pid namespace

    @property
    def cgroup_parent(self) -> str:
        qos = "" if self.qos == "guaranteed" else f"/{self.qos}"
        return f"/kubepods{qos}/pod{self.uid}"


@dataclass
class Call:
    """One CRI call: what, for whom, and when on CLOCK_BOOTTIME."""

    method: str
    target: str  # 'sandbox' or a container name
    start_ns: int
    end_ns: int
    ok: bool = True
    error: str | None = None

    @property
    def ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


@dataclass
class PodRun:
    spec: PodSpec
    sandbox_id: str | None = None
    container_ids: dict[str, str] = field(default_factory=dict)  # name -> id
    calls: list[Call] = field(default_factory=list)
    cgroup_dirs: list[Path] = field(default_factory=list)
    removed: bool = False  # StopPodSandbox and RemovePodSandbox done

    def call(self, method: str, target: str) -> Call:
        return next(c for c in self.calls if c.method == method and c.target == target)


class CriError(RuntimeError):
    pass


class CriClient:
    """RuntimeService over the private containerd's socket."""

    def __init__(self, address: str):
        import grpc  # noqa: PLC0415 - only the harness needs gRPC

        self.pb, grpc_mod = stubs.load()
        self._grpc = grpc
        self.channel = grpc.insecure_channel(f"unix://{address}")
        self.rt = grpc_mod.RuntimeServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def version(self):
        return self.rt.Version(self.pb.VersionRequest(version="v1"), timeout=CALL_TIMEOUT_S)

    def timed(self, run: PodRun, method: str, target: str, request):
        start = boottime_ns()
        try:
            resp = getattr(self.rt, method)(request, timeout=CALL_TIMEOUT_S)
        except self._grpc.RpcError as e:
            run.calls.append(Call(method, target, start, boottime_ns(), False, e.details()))
            raise CriError(f"{method} ({target}): {e.details()}") from None
        run.calls.append(Call(method, target, start, boottime_ns()))
        return resp

    def sandbox_config(self, spec: PodSpec):
        pb = self.pb
        return pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=spec.name, uid=spec.uid, namespace=spec.namespace, attempt=0),
            hostname="" if spec.host_network else spec.name[:63],  # a host-network sandbox keeps the node's
            labels={"io.kubernetes.pod.name": spec.name, "io.kubernetes.pod.namespace": spec.namespace,
                    "io.kubernetes.pod.uid": spec.uid},
            linux=pb.LinuxPodSandboxConfig(
                cgroup_parent=spec.cgroup_parent,
                security_context=pb.LinuxSandboxSecurityContext(
                    namespace_options=self.namespaces(spec))),
        )

    def namespaces(self, spec: PodSpec):
        pb = self.pb
        return pb.NamespaceOption(network=pb.NODE if spec.host_network else pb.POD,
                                  pid=pb.NODE if spec.host_pid else pb.CONTAINER, ipc=pb.POD)

    def container_config(self, c: ContainerSpec, spec: PodSpec):
        pb = self.pb
        res = pb.LinuxContainerResources(cpu_period=c.cpu_period_us if c.cpu_quota_us else 0,
                                         cpu_quota=c.cpu_quota_us, memory_limit_in_bytes=c.memory_limit_bytes)
        sec = pb.LinuxContainerSecurityContext(
            capabilities=pb.Capability(add_capabilities=c.capabilities_add, drop_capabilities=c.capabilities_drop),
            namespace_options=self.namespaces(spec), readonly_rootfs=c.readonly_rootfs, no_new_privs=c.no_new_privs)
        return pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=c.name, attempt=0), image=pb.ImageSpec(image=c.image),
            command=c.command, args=c.args, envs=[pb.KeyValue(key=k, value=v) for k, v in c.env.items()],
            mounts=[pb.Mount(container_path=m.container_path, host_path=m.host_path, readonly=m.readonly)
                    for m in c.mounts],
            linux=pb.LinuxContainerConfig(resources=res, security_context=sec),
            labels={"io.kubernetes.container.name": c.name})

    def status(self, container_id: str):
        return self.rt.ContainerStatus(self.pb.ContainerStatusRequest(container_id=container_id),
                                       timeout=CALL_TIMEOUT_S).status

    def wait_exited(self, container_id: str, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.status(container_id)
            if st.state == self.pb.CONTAINER_EXITED:
                return st
            time.sleep(0.01)
        raise CriError(f"container {container_id[:12]} did not exit within {timeout:g}s")

    def stop_container(self, run: PodRun, name: str, grace_s: int = 30) -> None:
        """What the kubelet does before it stops a sandbox: SIGTERM, then SIGKILL after the grace period."""
        self.timed(run, "StopContainer", name,
                   self.pb.StopContainerRequest(container_id=run.container_ids[name], timeout=grace_s))

    def stop_remove(self, run: PodRun) -> None:
        if run.sandbox_id is None or run.removed:
            return
        sid = run.sandbox_id
        self.timed(run, "StopPodSandbox", "sandbox", self.pb.StopPodSandboxRequest(pod_sandbox_id=sid))
        self.timed(run, "RemovePodSandbox", "sandbox", self.pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
        run.removed = True
