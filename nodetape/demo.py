"""`nodetape demo`: record a real throttled container and explain it.

What it does, on this node, with nothing simulated:
1. starts `nodetape record` (every source this node can run) into a new tape;
2. runs a real pod the kubelet's way through containerd over CRI (nodetape/cri: a
   private containerd, a CNI bridge, a busybox image built here): the sandbox, then
   a container with a CPU quota of 0.2 cores running a CPU-bound shell loop; the
   pod is printed as default/<name>. Without containerd, a runc container with a
   kubelet-style cgroupsPath /kubepods/burstable/pod<uid>/<container id> stands
   in; without runc, a plain cgroup at the same path and a child process; the demo
   says which and why;
3. stops the pod after a few seconds, then the recorder;
4. prints the container's birth certificate (pod_births) and throttle timeline
   (throttle_timeline), says where the tape is, and what to run next.

Every cgroup, container, mount and network device it makes is removed again, also on Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from .background import BackgroundRecording
from nodetape.core.errors import UserError

QUOTA_US, PERIOD_US = 20_000, 100_000  # 0.2 cores
BPF_SOURCES = {"syscalls", "latency", "lineage", "cgroup-tp", "opens", "drops", "throttle-probe"}


def _say(msg: str) -> None:
    print(f"\033[1m==>\033[0m {msg}" if sys.stdout.isatty() else f"==> {msg}", flush=True)


class _PlainCgroup:
    """The no-runc stand-in: the same kubelet-style path in the v1 cpu hierarchy (or
    cgroup2 with the cpu controller), a 0.2-core quota, and a busy child process."""

    name = "a plain cgroup"

    def __init__(self, cgroup_root: Path, pod_uid: str, container_id: str):
        self.pod_uid, self.container_id, self.label = pod_uid, container_id, pod_uid
        from .recorder.kernelfs.cgroupfs import detect_layout

        layout = detect_layout(cgroup_root)
        rel = f"kubepods/burstable/pod{pod_uid}/{container_id}"
        self.dirs: list[Path] = []
        self.pod_dirs: list[Path] = []
        cpu_h = layout.hierarchy_for("cpu")
        if cpu_h is None:
            raise UserError(f"{cgroup_root}: no cpu controller to put a quota on")
        for h in {cpu_h, *(k for k in ("unified", layout.controllers.get("cpuacct")) if k in layout.hierarchies)}:
            self.dirs.append(layout.hierarchies[h] / rel)
        self.cpu_dir = layout.hierarchies[cpu_h] / rel
        self.v2 = cpu_h == "unified"
        self.proc: subprocess.Popen | None = None

    def prepare(self) -> list[str]:
        return []

    def close(self) -> None:
        self.stop()

    def start(self) -> None:
        for d in self.dirs:
            d.mkdir(parents=True, exist_ok=True)
        if self.v2:
            (self.cpu_dir / "cpu.max").write_text(f"{QUOTA_US} {PERIOD_US}")
        else:
            (self.cpu_dir / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (self.cpu_dir / "cpu.cfs_quota_us").write_text(str(QUOTA_US))
        procs = [str(d / "cgroup.procs") for d in self.dirs]

        def enter():
            for f in procs:
                with open(f, "w") as fh:
                    fh.write("0")

        self.proc = subprocess.Popen(["/bin/sh", "-c", "while :; do :; done"], preexec_fn=enter)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for d in self.dirs:
            for p in (d, d.parent, d.parent.parent, d.parent.parent.parent):
                try:
                    p.rmdir()
                except OSError:
                    break


class _CriPod:
    """The pod through a private containerd over CRI; containerd starts before the recorder."""

    name = "containerd over CRI"

    def __init__(self, cgroup_root: Path):
        from .cri import ContainerSpec, CriHarness, PodSpec

        self.spec = PodSpec(f"nodetape-demo-{uuid.uuid4().hex[:6]}", containers=[ContainerSpec(
            "busy", ["/bin/sh", "-c", "while :; do :; done"], cpu_quota_us=QUOTA_US, cpu_period_us=PERIOD_US,
            memory_limit_bytes=64 << 20)])
        self.pod_uid, self.container_id = self.spec.uid, None
        self.label = f"{self.spec.namespace}/{self.spec.name}"
        self.harness = CriHarness(cgroup_root)
        self.run = None

    def prepare(self) -> list[str]:
        self.harness.__enter__()
        return ["--runtime-state", str(self.harness.state_dir)]

    def start(self) -> None:
        self.run = self.harness.run_pod(self.spec)
        self.container_id = self.run.container_ids["busy"]
        calls = ", ".join(f"{c.method} {c.ms:.0f} ms" for c in self.run.calls if c.target in ("sandbox", "busy"))
        _say(f"pod {self.label} running ({self.harness.runtime}; {calls}): container busy in cgroup "
             f"{self.spec.cgroup_parent}/{self.container_id}")

    def stop(self) -> None:
        if self.run is not None:
            self.harness.teardown(self.run)
            self.run = None

    def close(self) -> None:
        self.harness.close()


class _RuncContainer:
    name = "runc"

    def __init__(self, bundle: Path, pod_uid: str, container_id: str):
        from . import runc

        self.c = runc.Container(bundle, container_id=container_id, pod_uid=pod_uid,
                                cpu_quota_us=QUOTA_US, cpu_period_us=PERIOD_US)
        self.pod_uid, self.container_id, self.label = pod_uid, container_id, pod_uid

    def prepare(self) -> list[str]:
        return []

    def start(self) -> None:
        _say(f"starting a real container with runc: cgroupsPath {self.c.cgroups_path}, "
             f"quota {QUOTA_US / PERIOD_US:.1f} cores, a CPU-bound shell loop")
        self.c.start()

    def stop(self) -> None:
        self.c.stop()

    def close(self) -> None:
        from . import runc

        self.c.stop()
        runc.remove_pod_cgroups(Path("/sys/fs/cgroup"), self.pod_uid)


def _workload(bundle: Path):
    """The best stand-in this node has for a kubelet's pod: containerd over CRI, else runc, else a plain cgroup."""
    from . import cri, runc

    pod_uid, container_id = str(uuid.uuid4()), uuid.uuid4().hex + uuid.uuid4().hex
    why = cri.missing()
    if why is None:
        w = _CriPod(Path("/sys/fs/cgroup"))
        try:
            return w, w.prepare()
        except Exception as e:  # noqa: BLE001 - announced, then the next stand-in
            w.close()
            why = f"containerd did not start ({str(e).splitlines()[0][:200]})"
    if runc.have_runc():
        _say(f"not using containerd over CRI: {why}; using runc instead")
        return _RuncContainer(bundle, pod_uid, container_id), []
    w = _PlainCgroup(Path("/sys/fs/cgroup"), pod_uid, container_id)
    _say(f"not using containerd over CRI: {why}")
    _say("runc is not installed (apt-get install runc busybox-static): using a plain cgroup at "
         f"/kubepods/burstable/pod{pod_uid}/{container_id} with a 0.2-core quota and a child "
         "process instead (no namespaces: the birth has no namespaces_isolated stage)")
    return w, []


def _render(table, title: str) -> None:
    from .output import print_table

    print(f"\n{title}")
    if table.num_rows == 0:
        print("  (no rows)")
        return
    sys.stdout.flush()
    print_table(table)


def _bar(pct: float | None, width: int = 20) -> str:
    if pct is None:
        return ""
    n = round(max(0.0, min(100.0, pct)) / 100 * width)
    return "█" * n + "·" * (width - n)


def explain(tape: Path, pod_uid: str, container_id: str, label: str | None = None) -> tuple[int, float | None]:
    """Print the birth certificate and throttle timeline; return (stages, max throttle %)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from . import api

    db = api.open(tape)
    births = db.query("pod_births")
    births = births.filter(pc.equal(births["pod_uid"], pod_uid))
    names = births["container_name"].to_pylist()
    sandboxes = {c for c, st in zip(births["container_id"].to_pylist(), births["stage"].to_pylist())
                 if st in ("sandbox_created", "pause_exec")}
    births = births.select(["container_id", "stage", "ts", "offset_ms", "detail"])
    short = [n or ("(sandbox)" if c in sandboxes else c[:12] + "…" if c else "(pod)")
             for c, n in zip(births["container_id"].to_pylist(), names)]
    births = births.set_column(0, "container", pa.array(short, pa.string()))
    who = f"{label} ({pod_uid})" if label and label != pod_uid else pod_uid
    _render(births, f"Birth certificate of pod {who} (pod_births):")

    tl = db.query("throttle_timeline", window="1s")
    tl = tl.filter(pc.equal(tl["container_id"], container_id))
    pct = tl["throttle_pct"].to_pylist()
    view = pa.table({
        "window_start": tl["window_start"],
        "periods": tl["nr_periods"],
        "throttled": tl["nr_throttled"],
        "throttle_pct": tl["throttle_pct"],
        "": pa.array([_bar(p) for p in pct], pa.string()),
        "cpu_ms": tl["cpu_usage_ms"],
        "quota_cores": tl["quota_cores"],
        "psi_cpu_avg10": tl["psi_cpu_some_avg10"],
    })
    _render(view, f"Throttle timeline of container {container_id[:12]}… (throttle_timeline, 1s windows):")
    values = [p for p in pct if p is not None]
    return births.num_rows, (max(values) if values else None)


def run_demo(out: Path | None = None, seconds: float = 6.0, bpf: bool = True) -> int:
    from .recorder.registry import SOURCE_NAMES

    if os.geteuid() != 0:
        raise UserError("demo: needs root (it creates cgroups and a container); run it as root")
    if seconds <= 0 or seconds > 600:
        raise UserError("--seconds: give a value between 0 and 600")
    out = out or Path(tempfile.gettempdir()) / time.strftime("nodetape-demo-%Y%m%d-%H%M%S")
    if out.exists() and any(out.iterdir()):
        raise UserError(f"--out {out}: folder exists and is not empty")
    # psi-triggers needs a trigger spec; the demo has none to give
    sources = [s for s in SOURCE_NAMES if s != "psi-triggers" and (bpf or s not in BPF_SOURCES)]
    bundle = Path(tempfile.mkdtemp(prefix="nodetape-demo-bundle-"))
    workload = None
    try:
        workload, extra = _workload(bundle)
        _say(f"recording into {out} (sources: {'all' if bpf else 'all but eBPF'}; compiling eBPF takes a few seconds)")
        with BackgroundRecording(out, sources, extra_args=extra) as rec:
            _say(f"recorder ready: {len(rec.active)} sources active ({', '.join(rec.active)})")
            for n, why in rec.unavailable.items():
                print(f"    not recording {n}: {why}")
            time.sleep(0.5)  # a baseline before the container exists
            workload.start()
            _say(f"running for {seconds:g}s under the quota")
            time.sleep(seconds)
            _say("stopping the pod" if isinstance(workload, _CriPod) else "stopping the container")
            workload.stop()
            time.sleep(1.0)  # let the recorder see the removal and a last sample
    except KeyboardInterrupt:
        _say("interrupted: cleaned up the container and stopped the recorder")
        raise
    finally:
        if workload is not None:
            workload.close()
        shutil.rmtree(bundle, ignore_errors=True)
    _say("recording stopped")
    stages, worst = explain(out, workload.pod_uid, workload.container_id, workload.label)
    _next_steps(out, workload.container_id, worst)
    return 0 if stages else 1


def _next_steps(out: Path, container_id: str, worst: float | None) -> None:
    print()
    if worst is not None:
        print(f"The container asked for a whole core and got 0.2: it was throttled in up to {worst:.0f}% "
              "of its CFS periods.")
    print(f"Tape: {out}")
    print("Next:")
    print(f"  nodetape info {out}")
    print(f"  nodetape report {out} --html report.html")
    print(f"  nodetape query {out} pod_startup")
    print(f"  nodetape sql {out} \"SELECT ts, hierarchy, nr_periods, nr_throttled FROM cgroup_samples "
          f"WHERE container_id = '{container_id}' ORDER BY ts\"")
    print(f"  nodetape replay {out} --tables cgroup_events --max | head")
