"""Run the benchmark suite and write BENCHMARKS.md and bench/results.json.

    ./run bench            the full suite (about 15 minutes on 2 cores)
    ./run bench --quick    a smoke run with small sizes (about 3 minutes)
    ./run bench --only syscalls,ringbuf

Every figure is measured in the same run as the ceiling or peer it is compared
with, as a median over repeats with its spread.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import platform
import sys
import time
import traceback

from .common import REPO

# section -> (module, title); ARGS gives each module's run() its sizes for full and quick runs
SECTIONS = {
    "syscalls": ("bench.bench_syscalls", "1. Syscall counting: overhead beside syscount and bpftrace"),
    "ringbuf": ("bench.bench_ringbuf", "2. Raw event throughput: batch ring-buffer consumer vs bare bcc callback"),
    "sampler": ("bench.bench_sampler", "3. Sampler cost versus cgroup count"),
    "recording": ("bench.bench_recording", "4 and 7. Storage and idle overhead"),
    "queries": ("bench.bench_queries", "5. Query speed on synthetic tapes"),
    "replay": ("bench.bench_replay", "6. Replay speed and pacing"),
    "storm": ("bench.bench_storm", "8. The recorder loop during a cgroup storm"),
}


ARGS = {
    "syscalls": ({"n": 3_000_000, "repeats": 5}, {"n": 300_000, "repeats": 1, "stress_ops": 300}),
    "ringbuf": ({"seconds": 3.0}, {"seconds": 1.0, "drain_pages": 4096}),
    "sampler": ({"counts": (100, 1000, 5000), "seconds": 10.0}, {"counts": (100, 1000), "seconds": 2.0}),
    "recording": ({"quick": False}, {"quick": True}),
    "queries": ({"quick": False}, {"quick": True}),
    "replay": ({"quick": False}, {"quick": True}),
    "storm": ({}, {"parents": 20, "children": 10, "rounds": 1}),
}


def machine() -> dict:
    return {
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
    }


def _cpu_model() -> str | None:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="./run bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes and short runs (CI smoke)")
    ap.add_argument("--only", help="comma list of sections: " + ",".join(SECTIONS))
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"), help="markdown report to write")
    ap.add_argument("--json", default=str(REPO / "bench" / "results.json"), help="results JSON to write")
    args = ap.parse_args(argv)
    only = args.only.split(",") if args.only else list(SECTIONS)
    unknown = [s for s in only if s not in SECTIONS]
    if unknown:
        ap.error(f"unknown section(s): {', '.join(unknown)}")
    results: dict = {"machine": machine(), "quick": args.quick, "sections": {}}
    if args.only and os.path.exists(args.json):
        # a partial run refreshes its sections and keeps the others' last figures
        with open(args.json) as f:
            previous = json.load(f)
        if previous.get("quick") == args.quick:
            results["sections"] = previous.get("sections", {})
    for name in only:
        module, title = SECTIONS[name]
        print(f"==> {title}", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        load_before = os.getloadavg()[0]
        try:
            mod = importlib.import_module(module)
            out = mod.run(**ARGS[name][1 if args.quick else 0])
            results["sections"][name] = {"ok": True, "seconds": round(time.monotonic() - t0, 1), "result": out,
                                         "measured": machine()["date"],
                                         # other work on the machine shows here: it is reported beside the figures
                                         "loadavg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
        except Exception as e:  # one broken section must not lose the others' numbers
            traceback.print_exc()
            results["sections"][name] = {"ok": False, "seconds": round(time.monotonic() - t0, 1),
                                         "error": f"{type(e).__name__}: {e}"}
        print(f"    done in {time.monotonic() - t0:.0f}s", file=sys.stderr, flush=True)
    from .common import keep_notes
    from .report import headline, render

    results.update(headline(results))
    command = "./run bench" + (" --quick" if args.quick else "")
    with open(args.json, "w") as f:
        json.dump(results, f, indent=2, default=str)
        f.write("\n")
    old = open(args.out).read() if os.path.exists(args.out) else ""
    with open(args.out, "w") as f:
        f.write(keep_notes(old, render(results, command)))  # each section's hand-written notes stay
    print(f"wrote {args.out} and {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
