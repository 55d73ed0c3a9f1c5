"""Idle overhead and storage: what a recording costs the node and the disk.

Idle: `nodetape record` with every source this node can run, on an idle node,
for D seconds (IDLE_S, 3 minutes), three times: the recorder's CPU % of one core after start-up,
and its memory from /proc/PID/smaps_rollup with anonymous memory (heap, Arrow
and numpy buffers, libbcc's per-program state) apart from file-backed pages
(libLLVM/libclang and pyarrow code, shared with other processes); bytes per
second of tape and bytes per cgroup_samples row. In-kernel BPF time is not in
the process's CPU time; the syscall benchmark measures that side.

Storage: bytes per row of each table and bytes per second of recording, for
the idle node and for a busy one (a stress-ng mix of forks, opens and
get* syscalls, while recording).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

from .common import WORK, median_spread, nodetape_cmd, proc_cpu_seconds, proc_rss_bytes

WARM_UP_S = 8.0  # past start-up: eight BPF programs compile in about 5 s here
IDLE_RUNS = 3
IDLE_S = 180


def _rollup(pid: int) -> dict:
    """Rss and Anonymous of /proc/PID/smaps_rollup, in bytes (file-backed = Rss - Anonymous)."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            p = line.split()
            if len(p) == 3 and p[2] == "kB" and p[0] in ("Rss:", "Anonymous:"):
                out[p[0][:-1].lower()] = int(p[1]) * 1024
    return out


def _record(name: str, seconds: float, load: list[str] | None = None, tree: Path | None = None) -> dict:
    """One recording of `seconds`; its CPU is measured from WARM_UP_S after the start to 1 s before
    `seconds` (the recorder's --duration starts after its start-up, so the window ends while it still
    records): the steady state, without start-up (BPF compiles) or shutdown (final flush, detach),
    which once cost 0.06% of a core over 3 minutes. `tree`: another checkout to run instead of this
    one (its own .venv and nodetape), measured by this same code (bench.idle_peer)."""
    tape = WORK / name
    shutil.rmtree(tape, ignore_errors=True)
    WORK.mkdir(parents=True, exist_ok=True)
    args = ("record", str(tape), "--duration", f"{seconds}s", "--quiet")
    cmd = [str(tree / ".venv" / "bin" / "python"), "-m", "nodetape.cli", *args] if tree else nodetape_cmd(*args)
    rec = subprocess.Popen(cmd, cwd=tree)
    start = time.monotonic()
    loader = None
    cpu0 = None
    rss_samples = []
    rollup: dict = {}
    try:
        time.sleep(min(WARM_UP_S, seconds / 3))  # past start-up (BPF compiles) before measuring
        cpu0, t0 = proc_cpu_seconds(rec.pid), time.monotonic()
        if load:
            # stress-ng makes its scratch files in the working directory: keep them out of the repo
            loader = subprocess.Popen(load, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=WORK)
        while rec.poll() is None:
            try:
                if time.monotonic() - start < seconds - 1:
                    cpu1, t1 = proc_cpu_seconds(rec.pid), time.monotonic()
                rss_samples.append(proc_rss_bytes(rec.pid))
                rollup = _rollup(rec.pid) or rollup
            except (OSError, IndexError):
                break
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
        "anon_bytes": rollup.get("anonymous"),
        "file_bytes": rollup["rss"] - rollup["anonymous"] if rollup else None,
        "seconds": wall,
        "bytes": sum(t["bytes"] for t in tables.values()),
        "bytes_per_s": sum(t["bytes"] for t in tables.values()) / wall,
        "tables": {k: {"rows": v["rows"], "bytes": v["bytes"], "bytes_per_row": v["bytes"] / max(v["rows"], 1)}
                   for k, v in sorted(tables.items())},
        "sources_active": sorted(k for k, v in manifest["sources"].items() if v["status"] in ("active", "stopped")),
        "sources_unavailable": {k: v["reason"] for k, v in manifest["sources"].items()
                                if v["status"] not in ("active", "stopped")},
    }


def _spread(runs: list[dict]) -> dict:
    samples = [r["tables"].get("cgroup_samples") for r in runs]
    return {
        "cpu_pct": median_spread([r["cpu_pct"] for r in runs]),
        "anon_mib": median_spread([r["anon_bytes"] / 2**20 for r in runs]),
        "file_mib": median_spread([r["file_bytes"] / 2**20 for r in runs]),
        "bytes_per_s": median_spread([r["bytes_per_s"] for r in runs]),
        "bytes_per_row_cgroup_samples": median_spread([s["bytes_per_row"] for s in samples if s]) if all(samples) else None,
    }


def run(quick: bool = False) -> dict:
    # 3 minutes: compaction merges three parts of a tier into one (docs/compaction.md), so a tape
    # reaches the 81-flush tier at 162 s; a 45 s tape holds little but fresh parts and 9-flush
    # merges, whose fixed per-part footer made bytes per row a start-up figure, not an idle node's
    idle_s = 20 if quick else IDLE_S
    busy_s = 15 if quick else 30
    runs = [_record("idle", idle_s) for _ in range(IDLE_RUNS)]
    # the run with the median CPU is shown in full; the spread is over all runs
    idle = sorted(runs, key=lambda r: r["cpu_pct"])[len(runs) // 2]
    # fork, open and get (getpid and friends) stressors; stress-ng skips its exec stressor as root
    busy_load = ["stress-ng", "--fork", "1", "--open", "1", "--get", "1", "--timeout", f"{busy_s}s"]
    busy = _record("busy", busy_s, load=busy_load if shutil.which("stress-ng") else None)
    return {"idle": idle, "idle_runs": _spread(runs), "busy": busy}
