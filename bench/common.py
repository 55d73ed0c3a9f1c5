"""Shared helpers for the benchmark modules: repeats, medians with spread, process CPU."""

from __future__ import annotations

import functools
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "bench" / "work"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def median_spread(values: list[float]) -> dict:
    """Median with the spread (min..max) and the count, as every figure is reported."""
    vals = sorted(values)
    return {"median": statistics.median(vals), "min": vals[0], "max": vals[-1], "n": len(vals)}


def fmt_ms(d: dict, scale: float = 1.0, unit: str = "") -> str:
    return f"{d['median'] * scale:.3g}{unit} ({d['min'] * scale:.3g}–{d['max'] * scale:.3g}, n={d['n']})"


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def thread_timed(fn, record, probe=None):
    """`fn` wrapped to call `record(cpu_seconds, before, after)` after each call, even one that raises:
    the calling thread's CPU time in the call (time.thread_time: user + system, nothing while blocked),
    and `probe(*args, **kwargs)` read before and after (None without a probe: e.g. the thread's
    context switches, a counter on `self`). The wrapper costs two clock reads, ~1 us here. The CPU
    measurement scripts (idle_split, poll_cost, flush_cpu) wrap the recorder's steps with it."""
    clock = time.thread_time

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        before = probe(*a, **kw) if probe else None
        t0 = clock()
        try:
            return fn(*a, **kw)
        finally:
            dt = clock() - t0
            record(dt, before, probe(*a, **kw) if probe else None)
    return wrapper


def nodetape_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "nodetape.cli", *args]


def run_quiet(cmd: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def now() -> float:
    return time.monotonic()


def write_section(key: str, marker: str, section: dict, head: dict, markdown: str) -> None:
    """A standalone section's results into bench/results.json (its section and headline keys) and its
    markdown into BENCHMARKS.md in place of its previous text (the section starting at `marker`)."""
    import json

    rpath = REPO / "bench" / "results.json"
    results = json.loads(rpath.read_text()) if rpath.exists() else {"sections": {}}
    results.setdefault("sections", {})[key] = {"ok": True, "result": section}
    results.update(head)
    rpath.write_text(json.dumps(results, indent=2, default=str) + "\n")
    bpath = REPO / "BENCHMARKS.md"
    text = bpath.read_text() if bpath.exists() else ""
    if marker in text:
        start = text.index(marker)
        nxt = text.find("\n## ", start + 1)
        text = text[:start] + (text[nxt + 1:] if nxt >= 0 else "")
    bpath.write_text(text.rstrip("\n") + "\n\n" + markdown)
