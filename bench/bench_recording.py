"""Idle overhead and storage: what a recording costs the node and the disk.

Idle: `nodetape record` with every source this node can run, on an idle node,
for D seconds: the recorder's CPU % of one core (over the whole run, and per
10 s window for the spread) and RSS, anonymous and file-backed apart (RssAnon,
RssFile from /proc/PID/status: file-backed is mostly libLLVM/libclang and Arrow
mapped from disk, shared with any other process using them). In-kernel BPF time is not in the process's
CPU time; the syscall benchmark measures that side.

Storage: bytes per row of each table and bytes per second of recording, for
the idle node and for a busy one (a stress-ng mix of forks, opens and
get* syscalls, while recording).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time

from .common import WORK, median_spread, nodetape_cmd, proc_cpu_seconds, proc_rss_bytes

WINDOW_S = 10.0  # CPU % per window of this length: the spread of the idle figure


def rss_parts(pid: int) -> dict:
    """Anonymous, file-backed and shared RSS of a process (/proc/PID/status), bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("RssAnon", "RssFile", "RssShmem"):
                out[k] = int(v.split()[0]) * 1024
    return out


def _record(name: str, seconds: float, load: list[str] | None = None) -> dict:
    tape = WORK / name
    shutil.rmtree(tape, ignore_errors=True)
    WORK.mkdir(parents=True, exist_ok=True)
    rec = subprocess.Popen(nodetape_cmd("record", str(tape), "--duration", f"{seconds}s", "--quiet"))
    loader = None
    cpu0 = None
    rss_samples = []
    parts: list[dict] = []
    windows: list[float] = []
    try:
        time.sleep(min(5.0, seconds / 4))  # past start-up (BPF compiles) before measuring
        cpu0, t0 = proc_cpu_seconds(rec.pid), time.monotonic()
        wcpu, wt = cpu0, t0
        if load:
            # stress-ng makes its scratch files in the working directory: keep them out of the repo
            loader = subprocess.Popen(load, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=WORK)
        while rec.poll() is None:
            try:
                cpu1, t1 = proc_cpu_seconds(rec.pid), time.monotonic()
                rss_samples.append(proc_rss_bytes(rec.pid))
                parts.append(rss_parts(rec.pid))
            except (OSError, IndexError):
                break
            if t1 - wt >= WINDOW_S:
                windows.append(100.0 * (cpu1 - wcpu) / (t1 - wt))
                wcpu, wt = cpu1, t1
            time.sleep(0.5)
    finally:
        if loader:
            early = loader.poll()
            loader.kill()
            loader.wait()
            if early not in (None, 0):
                raise RuntimeError(f"the load {' '.join(load)} failed (exit {early}): the busy figures would be idle ones")
        rec.wait()
    manifest = json.loads((tape / "manifest.json").read_text())
    wall = (manifest["end_ns"] - manifest["start_ns"]) / 1e9
    tables = manifest["tables"]
    return {
        "cpu_pct": 100.0 * (cpu1 - cpu0) / max(t1 - t0, 1e-9),
        "rss_max_bytes": max(rss_samples) if rss_samples else None,
        "rss_last_bytes": rss_samples[-1] if rss_samples else None,
        # the last sample: steady state, past start-up
        "rss_anon_bytes": parts[-1].get("RssAnon") if parts else None,
        "rss_file_bytes": parts[-1].get("RssFile") if parts else None,
        "rss_shmem_bytes": parts[-1].get("RssShmem") if parts else None,
        "rss_anon_max_bytes": max(p.get("RssAnon", 0) for p in parts) if parts else None,
        "cpu_pct_windows": median_spread(windows) if windows else None,
        "seconds": wall,
        "bytes": sum(t["bytes"] for t in tables.values()),
        "bytes_per_s": sum(t["bytes"] for t in tables.values()) / wall,
        "tables": {k: {"rows": v["rows"], "bytes": v["bytes"], "bytes_per_row": v["bytes"] / max(v["rows"], 1)}
                   for k, v in sorted(tables.items())},
        "sources_active": sorted(k for k, v in manifest["sources"].items() if v["status"] in ("active", "stopped")),
        "sources_unavailable": {k: v["reason"] for k, v in manifest["sources"].items()
                                if v["status"] not in ("active", "stopped")},
    }


def run(quick: bool = False) -> dict:
    idle_s = 15 if quick else 60
    busy_s = 10 if quick else 30
    idle = _record("idle", idle_s)
    # fork, open and get (getpid and friends) stressors; stress-ng skips its exec stressor as root
    busy_load = ["stress-ng", "--fork", "1", "--open", "1", "--get", "1", "--timeout", f"{busy_s}s"]
    busy = _record("busy", busy_s, load=busy_load if shutil.which("stress-ng") else None)
    return {"idle": idle, "busy": busy}
