"""Where an idle recorder's CPU goes, without a profiler: thread CPU time around each step.

Runs `nodetape record OUT --interval 1s --quiet` in this process (every source this node
can run, unless --sources says) and accumulates time.thread_time() around each source's
poll and each of the loop's own steps (Recorder._write, _stats_batch, _check_clock,
_flush, _sleep, and poll_all as a whole: is_due and the writes of the polled batches
included). After a warm-up (start-up and the first flushes excluded), a side thread reads
every thread's CPU clock (time.pthread_getcpuclockid) and the accumulators, and again
SECONDS later; the difference is printed per step: calls, ms per call, % of a core. The
loop's wake-ups are its passes (returns from _sleep) in that window, and the loop thread's
voluntary context switches (/proc/self/task/TID/status: every sleep, and any block on I/O or a
lock, e.g. fsync in a flush). Nothing is sampled:
the only overhead is two thread_time() calls per wrapped call (~1 us each here).

    sudo .venv/bin/python -m bench.idle_split [--seconds 90] [--warmup 10] [--sources a,b] [--json F]

docs/idle.md ("What it costs, and where from") reports its figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

from .common import thread_timed

_cpu: dict[str, float] = defaultdict(float)  # step -> thread CPU seconds
_calls: dict[str, int] = defaultdict(int)
_blocks: dict[str, int] = defaultdict(int)  # step -> voluntary context switches inside it (sleeps, I/O, GIL)
_loop: dict[str, int] = {}  # the loop thread's ident
_passes: list[tuple[int, tuple[str, ...]]] = []  # (boottime at the pass, sources polled)
_polled: list[str] = []
_gc: dict[str, float] = defaultdict(float)  # "genN": collections, "cpu": thread CPU seconds inside them


def _gc_callback(phase: str, info: dict) -> None:
    # the cyclic GC runs on whichever thread allocates: its time is counted there too
    if phase == "start":
        _gc["t0"] = time.thread_time()
    else:
        _gc["cpu"] += time.thread_time() - _gc.get("t0", time.thread_time())
        _gc[f"gen{info['generation']}"] += 1


def _timed(name: str, fn):
    def record(dt: float, v0: int, v1: int) -> None:
        _cpu[name] += dt
        _blocks[name] += v1 - v0
        _calls[name] += 1
    return thread_timed(fn, record, probe=lambda *a, **kw: resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw)


def _timed_poll(name: str, fn):
    inner = _timed(f"poll {name}", fn)

    def wrapper(now_ns):
        _polled.append(name)
        return inner(now_ns)
    return wrapper


def instrument() -> None:
    """Wrap the loop's steps and, once started, every source's poll."""
    from nodetape.core.clock import boottime_ns
    from nodetape.recorder import loop

    start_sources, poll_all = loop.start_sources, loop.poll_all

    def started(names, ctx, states, write):
        _loop["ident"], _loop["tid"] = threading.get_ident(), threading.get_native_id()
        start_sources(names, ctx, states, write)
        for st in states:
            if st.source is not None:
                st.source.poll = _timed_poll(st.name, st.source.poll)

    timed_poll_all = _timed("poll_all (polls, is_due, writes)", poll_all)

    def each_pass(*a, **kw):
        _polled.clear()
        out = timed_poll_all(*a, **kw)
        _passes.append((boottime_ns(), tuple(_polled)))
        return out

    loop.start_sources, loop.poll_all = started, each_pass
    for meth in ("_write", "_stats_batch", "_check_clock", "_flush", "_sleep"):
        setattr(loop.Recorder, meth, _timed(meth, getattr(loop.Recorder, meth)))


def _thread_cpu() -> dict[str, float]:
    out = {}
    for t in threading.enumerate():
        try:
            clk = time.pthread_getcpuclockid(t.ident)
            name = "loop" if t.ident == _loop.get("ident") else t.name
            out[f"{name} [{t.ident}]"] = time.clock_gettime(clk)
        except (OSError, TypeError):
            continue  # ended in between
    return out


def _sleeps() -> int:
    """The loop thread's voluntary context switches: each time it slept (or blocked)."""
    with open(f"/proc/self/task/{_loop['tid']}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt_switches"))


def _snapshot() -> dict:
    return {"t": time.monotonic(), "proc": sum(os.times()[:2]), "threads": _thread_cpu(),
            "cpu": dict(_cpu), "calls": dict(_calls), "blocks": dict(_blocks), "passes": len(_passes),
            "sleeps": _sleeps(), "gc": dict(_gc)}


def _diff(a: dict, b: dict) -> dict:
    wall = b["t"] - a["t"]
    steps = {}
    for k in sorted(b["cpu"]):
        n = b["calls"][k] - a["calls"].get(k, 0)
        s = b["cpu"][k] - a["cpu"].get(k, 0.0)
        v = b["blocks"][k] - a["blocks"].get(k, 0)
        steps[k] = {"calls": n, "ms_per_call": round(1e3 * s / n, 4) if n else None,
                    "pct_core": round(100 * s / wall, 4), "blocks_per_s": round(v / wall, 3)}
    threads = {k: round(100 * (v - a["threads"].get(k, 0.0)) / wall, 4) for k, v in b["threads"].items()}
    return {"wall_s": round(wall, 2), "process_pct_core": round(100 * (b["proc"] - a["proc"]) / wall, 4),
            "threads_pct_core": threads, "steps": steps,
            "wakeups_per_s": round((b["passes"] - a["passes"]) / wall, 3),
            "loop_sleeps_per_s": round((b["sleeps"] - a["sleeps"]) / wall, 3),
            "gc": {k: round(v - a["gc"].get(k, 0.0), 6) for k, v in b["gc"].items() if k != "t0"}}


def _measure(warmup: float, seconds: float, result: dict) -> None:
    time.sleep(warmup)
    a = _snapshot()
    first = len(_passes)
    time.sleep(seconds)
    b = _snapshot()
    result.update(_diff(a, b))
    polled = defaultdict(int)
    for _, names in _passes[first:b["passes"]]:
        polled[" ".join(names) or "-"] += 1
    result["passes_by_polled_sources"] = dict(sorted(polled.items(), key=lambda kv: -kv[1]))


def _print(r: dict) -> None:
    print(f"window {r['wall_s']} s: process {r['process_pct_core']}% of a core, "
          f"loop passes {r['wakeups_per_s']}/s, loop thread sleeps {r['loop_sleeps_per_s']}/s")
    print(f"  cyclic GC in the window: {r['gc']}")
    for k, v in sorted(r["threads_pct_core"].items(), key=lambda kv: -kv[1]):
        print(f"  thread {k:40s} {v:8.4f}%")
    for k, v in r["steps"].items():
        print(f"  {k:40s} {v['calls']:6d} calls {v['ms_per_call'] or 0:8.4f} ms {v['pct_core']:8.4f}% "
              f"{v['blocks_per_s']:7.2f} blocks/s")
    for k, n in list(r["passes_by_polled_sources"].items())[:12]:
        print(f"  pass polled {k}: {n}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=90.0)
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--sources", default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    from nodetape.recorder import memory

    memory.configure()  # as `nodetape record` does, before pyarrow loads
    instrument()
    import gc

    gc.callbacks.append(_gc_callback)
    from nodetape import cli

    result: dict = {}
    with tempfile.TemporaryDirectory(prefix="nodetape-idle-split-") as d:
        threading.Thread(target=_measure, args=(args.warmup, args.seconds, result), daemon=True).start()
        argv = ["record", f"{d}/tape", "--interval", "1s", "--quiet",
                "--duration", f"{args.warmup + args.seconds + 2:.0f}s"]
        if args.sources:
            argv += ["--sources", args.sources]
        rc = cli.run(argv)
    if rc:
        raise SystemExit(f"nodetape record exited {rc}")
    _print(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
