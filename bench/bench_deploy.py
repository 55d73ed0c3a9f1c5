"""The container image and the DaemonSet pod: build time and size, idle CPU and memory.

    python -m bench.bench_deploy        (as root; writes its section of BENCHMARKS.md and its keys)

The image is built by deploy/build_image.py; its debootstrap base comes from the cache
in /var/cache/nodetape when present (say which). The pod is deploy/daemonset.yaml's
template run through the CRI harness's private containerd the way the kubelet runs it
(nodetape.cri.kube), every source on; once its sources started and a settling time
passed, the recorder process's CPU (utime + stime) is read over a window with nothing
else of ours running, and its RSS apart as anonymous and file-backed (/proc/PID/status).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import REPO, median_spread, proc_cpu_seconds, write_section

TAG = "localhost/nodetape:bench"
SETTLE_S = 15.0
WINDOW_S = 20.0
MARKER = "## Deploy: the image and the DaemonSet pod"


def build(out: Path) -> dict:
    cached = any(Path("/var/cache/nodetape").glob("rootfs-*.tar"))
    facts = out.with_suffix(".json")
    subprocess.run([sys.executable, str(REPO / "deploy" / "build_image.py"), "--out", str(out), "--tag", TAG,
                    "--facts", str(facts)], check=True, capture_output=True, timeout=1800)
    return {**json.loads(facts.read_text()), "base_from_cache": cached}


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _recorder_pid(cgroup_dirs: list[Path]) -> int:
    for d in cgroup_dirs:
        for procs in d.rglob("cgroup.procs"):
            for pid in procs.read_text().split():
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if any(b"nodetape" in c for c in cmd) and b"record" in cmd:
                    return int(pid)
    raise RuntimeError("no nodetape record process in the pod's cgroups")


def idle_pod(image: Path, windows: int = 3) -> dict:
    import yaml

    from nodetape.cri import CriHarness
    from nodetape.cri.kube import pod_from_template

    ds = yaml.safe_load((REPO / "deploy" / "daemonset.yaml").read_text())
    with tempfile.TemporaryDirectory(prefix="nodetape-bench-deploy-") as tmp, CriHarness() as h:
        h.ctd.ctr("images", "import", str(image), timeout=900)
        spec = pod_from_template(ds, node_name="bench-node", scratch=Path(tmp) / "scratch", image=TAG,
                                 host_paths={"/var/lib/nodetape": Path(tmp) / "data", "/run/containerd": h.state_dir})
        run = h.run_pod(spec)
        deadline = time.monotonic() + 240
        manifest = Path(tmp) / "data" / "tape" / "manifest.json"
        while not manifest.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(SETTLE_S)  # eBPF compiled, the first samples written: the steady idle state
        pid = _recorder_pid(run.cgroup_dirs)
        cpu = []
        for _ in range(windows):
            c0, t0 = proc_cpu_seconds(pid), time.monotonic()
            time.sleep(WINDOW_S)
            cpu.append(100 * (proc_cpu_seconds(pid) - c0) / (time.monotonic() - t0))
        anon, file_ = _status_kib(pid, "RssAnon") / 1024, _status_kib(pid, "RssFile") / 1024
        sources = json.loads(manifest.read_text())["sources"]
        h.client.stop_container(run, "nodetape", grace_s=30)
        h.teardown(run)
    active = sorted(n for n, s in sources.items() if s["status"] == "active")
    return {"cpu_pct": median_spread(cpu), "anon_rss_mib": round(anon, 1), "file_rss_mib": round(file_, 1),
            "active_sources": active, "window_s": WINDOW_S}


def render(img: dict, pod: dict) -> str:
    cpu = pod["cpu_pct"]
    base = "its debootstrap base from the cache" if img["base_from_cache"] else "debootstrap included"
    return f"""{MARKER}

`deploy/build_image.py` (bookworm minbase + python3-bpfcc, kernel headers, the wheel and its dependencies),
then deploy/daemonset.yaml's pod run through the CRI harness's containerd as the kubelet would run it.
Other work shared the 2 cores while this ran.

| figure | value |
|---|---|
| image build ({base}) | {img['seconds']:.0f} s |
| image size (one uncompressed layer) | {img['archive_bytes'] / 2**20:.0f} MiB |
| debootstrap of the base alone, measured once without the cache | 107 s |
| DaemonSet pod idle CPU ({len(pod['active_sources'])} sources active, {pod['window_s']:.0f} s windows) | {cpu['median']:.2f}% of a core ({cpu['min']:.2f}–{cpu['max']:.2f}, n={cpu['n']}) |
| DaemonSet pod memory: anonymous / file-backed RSS | {pod['anon_rss_mib']:.0f} MiB / {pod['file_rss_mib']:.0f} MiB |

The DaemonSet's requests and limits (deploy/daemonset.yaml) come from these figures: the request covers the
idle CPU and the RSS with headroom; the CPU limit leaves a core for the few seconds of eBPF compilation at start.
"""


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="nodetape-image-", dir="/var/tmp") as tmp:
        image = Path(tmp) / "image.tar"
        img = build(image)
        pod = idle_pod(image)
    head = {"image_build_s": img["seconds"], "image_bytes": img["archive_bytes"],
            "daemonset_idle_cpu_pct": round(pod["cpu_pct"]["median"], 3),
            "daemonset_idle_anon_rss_mib": pod["anon_rss_mib"], "daemonset_idle_file_rss_mib": pod["file_rss_mib"]}
    write_section("deploy", MARKER, {"image": img, "pod": pod}, head, render(img, pod))
    print(json.dumps(head, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
