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
class ContainerSpec:
    name: str
    command: list[str]
    cpu_quota_us: int = 0  # 0: no quota
    cpu_period_us: int = 100_000
    memory_limit_bytes: int = 0  # 0: no limit
    image: str = daemon.APP_IMAGE


@dataclass
class PodSpec:
    name: str
    namespace: str = "default"
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    qos: str = "burstable"  # guaranteed -> /kubepods/pod<uid>
    init_containers: list[ContainerSpec] = field(default_factory=list)
    containers: list[ContainerSpec] = field(default_factory=list)

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
            hostname=spec.name[:63],
            labels={"io.kubernetes.pod.name": spec.name, "io.kubernetes.pod.namespace": spec.namespace,
                    "io.kubernetes.pod.uid": spec.uid},
            linux=pb.LinuxPodSandboxConfig(
                cgroup_parent=spec.cgroup_parent,
                security_context=pb.LinuxSandboxSecurityContext(
                    namespace_options=pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER, ipc=pb.POD))),
        )

    def container_config(self, c: ContainerSpec):
        pb = self.pb
        res = pb.LinuxContainerResources(cpu_period=c.cpu_period_us if c.cpu_quota_us else 0,
                                         cpu_quota=c.cpu_quota_us, memory_limit_in_bytes=c.memory_limit_bytes)
        return pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=c.name, attempt=0), image=pb.ImageSpec(image=c.image),
            command=c.command, linux=pb.LinuxContainerConfig(resources=res),
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

    def stop_remove(self, run: PodRun) -> None:
        if run.sandbox_id is None or run.removed:
            return
        sid = run.sandbox_id
        self.timed(run, "StopPodSandbox", "sandbox", self.pb.StopPodSandboxRequest(pod_sandbox_id=sid))
        self.timed(run, "RemovePodSandbox", "sandbox", self.pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
        run.removed = True
