"""CriHarness: a private containerd, its images, and pods run the kubelet's way.

    with CriHarness() as h:
        run = h.run_pod(PodSpec("web", init_containers=[...], containers=[...]))
        ...
        h.teardown(run)           # StopPodSandbox, RemovePodSandbox, pod cgroup
    # leaving the block removes everything, also after an error or a signal

SIGTERM and SIGHUP become KeyboardInterrupt while the harness is open (in the
main thread), so `finally` blocks run; the cleanup itself runs with those
signals blocked, so a second Ctrl-C cannot cut it short.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from nodetape.core.clock import boottime_ns

from . import cleanup, daemon
from .pod import Call, ContainerSpec, CriClient, CriError, PodRun, PodSpec

_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


class CriHarness:
    def __init__(self, cgroup_root: Path = Path("/sys/fs/cgroup"), base: Path | None = None):
        self.cgroup_root = Path(cgroup_root)
        self.ctd = daemon.Containerd(base)
        self.client: CriClient | None = None
        self.runs: list[PodRun] = []
        self.setup_calls: list[Call] = []
        self._old_handlers: dict = {}
        # folders containerd and CNI make outside ours: removed at the end only if we made them
        self._maybe_ours = [p for p in (cleanup.SHIM_SOCKETS, cleanup.SHIM_SOCKETS.parent, cleanup.CNI_RESULTS,
                                        cleanup.CNI_RESULTS.parent) if not p.exists()]

    # -- lifecycle -------------------------------------------------------------
    def __enter__(self) -> CriHarness:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGTERM, signal.SIGHUP):
                self._old_handlers[s] = signal.signal(s, _interrupt)
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        cleanup.sweep_stale(self.cgroup_root)  # what a harness killed with SIGKILL left
        t0 = boottime_ns()
        self.ctd.start()
        self.client = CriClient(self.ctd.address)
        self.setup_calls.append(Call("containerd", "start", t0, boottime_ns()))
        t0 = boottime_ns()
        self.ctd.import_images()
        self.setup_calls.append(Call("ctr images import", daemon.APP_IMAGE, t0, boottime_ns()))
        v = self.client.version()
        self.runtime = f"{v.runtime_name} {v.runtime_version} (CRI {v.runtime_api_version})"

    @property
    def task_dir(self) -> Path:
        return self.ctd.task_dir

    @property
    def state_dir(self) -> Path:
        return self.ctd.state

    # -- pods ------------------------------------------------------------------
    def make_pod_cgroup(self, run: PodRun) -> None:
        """The kubelet makes the pod's cgroup before it asks for the sandbox."""
        start = boottime_ns()
        run.cgroup_dirs = cleanup.pod_cgroup_dirs(self.cgroup_root, run.spec.cgroup_parent)
        for d in run.cgroup_dirs:
            d.mkdir(parents=True, exist_ok=True)
        run.calls.append(Call("mkdir pod cgroup", "pod", start, boottime_ns()))

    def run_pod(self, spec: PodSpec, wait_init_s: float = 60.0) -> PodRun:
        """The kubelet's order: pod cgroup, sandbox, each init container to completion, app containers.

        A failing call raises CriError after it was recorded in run.calls; the
        run stays known, so teardown (or leaving the harness) cleans it.
        """
        assert self.client is not None, "harness not started"
        c = self.client
        run = PodRun(spec)
        self.runs.append(run)
        self.make_pod_cgroup(run)
        sandbox_config = c.sandbox_config(spec)
        resp = c.timed(run, "RunPodSandbox", "sandbox", c.pb.RunPodSandboxRequest(config=sandbox_config))
        run.sandbox_id = resp.pod_sandbox_id
        for cs in spec.init_containers:
            cid = self._create_start(run, cs, sandbox_config)
            start = boottime_ns()
            st = c.wait_exited(cid, wait_init_s)
            run.calls.append(Call("wait exited", cs.name, start, boottime_ns(), st.exit_code == 0,
                                  None if st.exit_code == 0 else f"exit code {st.exit_code}"))
            if st.exit_code != 0:
                raise CriError(f"init container {cs.name} exited with {st.exit_code}")
        for cs in spec.containers:
            self._create_start(run, cs, sandbox_config)
        return run

    def _create_start(self, run: PodRun, cs: ContainerSpec, sandbox_config) -> str:
        c = self.client
        resp = c.timed(run, "CreateContainer", cs.name, c.pb.CreateContainerRequest(
            pod_sandbox_id=run.sandbox_id, config=c.container_config(cs, run.spec),
            sandbox_config=sandbox_config))
        cid = resp.container_id
        run.container_ids[cs.name] = cid
        c.timed(run, "StartContainer", cs.name, c.pb.StartContainerRequest(container_id=cid))
        return cid

    def teardown(self, run: PodRun) -> None:
        """StopPodSandbox and RemovePodSandbox (the runtime stops and removes its containers), then the pod cgroup."""
        try:
            if self.client is not None:
                self.client.stop_remove(run)
        finally:
            for d in run.cgroup_dirs:
                cleanup.remove_cgroup_tree(d)
            cleanup.remove_empty_parents(self.cgroup_root, run.spec.cgroup_parent)
            if run in self.runs:
                self.runs.remove(run)

    # -- cleanup ---------------------------------------------------------------
    def close(self) -> None:
        """Remove everything, whatever state the daemon and the pods are in; signals wait until it is done."""
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            self._close()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            for s, h in self._old_handlers.items():
                signal.signal(s, h)
            self._old_handlers = {}

    def _close(self) -> None:
        sandbox_ids = {r.sandbox_id for r in self.runs if r.sandbox_id}
        for run in list(self.runs):
            try:
                self.teardown(run)
            except Exception:  # noqa: BLE001 - the forced cleanup below does the rest
                if run in self.runs:
                    self.runs.remove(run)
                for d in run.cgroup_dirs:
                    cleanup.remove_cgroup_tree(d)
                cleanup.remove_empty_parents(self.cgroup_root, run.spec.cgroup_parent)
        ids = cleanup.known_ids(self.ctd) | sandbox_ids
        if self.client is not None:
            self.client.close()
            self.client = None
        self.ctd.stop()
        cleanup.kill_all_naming(self.ctd.base)
        cleanup.unmount_beneath(self.ctd.base)
        cleanup.remove_shim_sockets(self.ctd.address, ids)
        cleanup.remove_cni_cache(ids)
        cleanup.delete_bridge()
        cleanup.remove_base(self.ctd.base)
        cleanup.remove_dirs_if_empty(self._maybe_ours)


__all__ = ["CriHarness", "PodSpec", "ContainerSpec", "PodRun", "Call", "CriError"]
