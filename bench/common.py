"""Shared helpers for the benchmark modules: repeats, medians with spread, process CPU."""

from __future__ import annotations

import functools
import os
import re
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


NOTES = "<!-- hand-written notes: kept when a benchmark rewrites this section -->"


def _sections(text: str) -> list[str]:
    """`text` cut before each level-2 heading (the first piece is what precedes the first one)."""
    cuts = [0] + [m.start() + 1 for m in re.finditer(r"\n## ", text)]
    return [text[a:b] for a, b in zip(cuts, cuts[1:] + [len(text)])]


def keep_notes(old: str, new: str) -> str:
    """`new` with each section's hand-written notes from `old` (the section's text from its NOTES
    line to its end) appended to the section of the same heading. A benchmark regenerates its
    tables and keeps the prose that explains them: what changed, what was tried, how it was read."""
    notes = {}
    for sec in _sections(old):
        if NOTES in sec:
            notes[sec.split("\n", 1)[0]] = sec[sec.index(NOTES):].rstrip("\n")
    out = []
    for sec in _sections(new):
        kept = notes.get(sec.split("\n", 1)[0])
        out.append(sec.rstrip("\n") + "\n\n" + kept + "\n\n" if kept and NOTES not in sec else sec)
    return "".join(out).rstrip("\n") + "\n"


def replace_section(text: str, marker: str, body: str) -> str:
    """`text` with the section starting at `marker` replaced by `body` (appended when it has none),
    the section's hand-written notes kept."""
    if marker not in text:
        return text.rstrip("\n") + "\n\n" + body.rstrip("\n") + "\n"
    start = text.index(marker)
    nxt = text.find("\n## ", start + 1)
    end = nxt + 1 if nxt >= 0 else len(text)
    fresh = text[:start] + body.rstrip("\n") + "\n\n" + text[end:]
    return keep_notes(text, fresh)


def write_section(key: str, marker: str, section: dict, head: dict, markdown: str) -> None:
    """A standalone section's results into bench/results.json (its section and headline keys) and its
    markdown into BENCHMARKS.md in place of its previous text (the section starting at `marker`;
    its hand-written notes kept)."""
    import json

    rpath = REPO / "bench" / "results.json"
    results = json.loads(rpath.read_text()) if rpath.exists() else {"sections": {}}
    results.setdefault("sections", {})[key] = {"ok": True, "result": section}
    results.update(head)
    rpath.write_text(json.dumps(results, indent=2, default=str) + "\n")
    bpath = REPO / "BENCHMARKS.md"
    text = bpath.read_text() if bpath.exists() else ""
    bpath.write_text(replace_section(text, marker, markdown))
