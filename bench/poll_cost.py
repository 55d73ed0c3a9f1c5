"""What each source's poll costs in a live recorder, as thread CPU time (docs/idle.md).

Runs `nodetape record` in this process (every source this node can run, the default 1 s
interval) and wraps each source class's poll() with time.thread_time_ns(): user + system
CPU of the loop thread inside the call, so no profiler inflates pure-Python code and a
thread blocked in a syscall counts nothing. Polls in the first WARM_UP_S seconds (the
programs compiling, the first reads) are left out.

    sudo .venv/bin/python -m bench.poll_cost [--seconds 60] [--json out.json]

Prints, per source: polls, CPU per poll (mean, ms), % of a core over the window, and the
sum over the eBPF sources. Not part of `./run bench`: a diagnostic for the idle figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from nodetape.recorder import lifecycle

from .common import thread_timed

WARM_UP_S = 10.0
BPF_SOURCES = ("drops", "latency", "lineage", "syscalls", "opens", "cgroup-tp", "throttle")
_acc: dict[str, list[int]] = {}  # source name -> [polls, thread CPU ns(, hash reads in the window)]
_t0: list[float] = []
_hash_reads: dict[str, int] = {}  # interval sources: whole-hash reads made (counters.py skips the rest)


def _hash_reads_of(self, _now_ns=None) -> tuple[str, int | None]:
    return self.name, getattr(getattr(self, "counters", None), "reads", None)


def _record(dt: float, before: tuple, after: tuple) -> None:
    if not (_t0 and time.monotonic() >= _t0[0]):
        return
    name, r0 = before
    a = _acc.setdefault(name, [0, 0])
    a[0] += 1
    a[1] += round(dt * 1e9)
    if after[1] is not None:
        _hash_reads.setdefault(name, r0)  # the count when the window opened
        a[2:] = [after[1] - _hash_reads[name]]


def _wrap(cls):
    if getattr(cls.poll, "_nt_timed", False):
        return cls
    poll = thread_timed(cls.poll, _record, probe=_hash_reads_of)
    poll._nt_timed = True
    cls.poll = poll
    return cls


def summary(acc: dict[str, list[int]], wall_s: float) -> dict:
    """{source: {polls, ms_per_poll, pct_core}} plus 'ebpf_total' (pct_core of the eBPF sources)."""
    out = {n: {"polls": a[0], "ms_per_poll": round(a[1] / max(a[0], 1) / 1e6, 3),
               "pct_core": round(100 * a[1] / 1e9 / wall_s, 3)} for n, a in sorted(acc.items())}
    for n, a in acc.items():
        if len(a) > 2:
            out[n]["hash_reads"] = a[2]
    out["ebpf_total"] = {"pct_core": round(sum(v["pct_core"] for n, v in out.items() if n in BPF_SOURCES), 3)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    load = lifecycle.load_source_class
    lifecycle.load_source_class = lambda name: _wrap(load(name))
    tmp = Path(tempfile.mkdtemp(prefix="nodetape-pollcost-"))
    from nodetape import cli

    sys.argv = ["nodetape", "record", str(tmp / "tape"), "--duration", f"{args.seconds + WARM_UP_S}s", "--quiet"]
    _t0.append(time.monotonic() + WARM_UP_S)
    try:
        cli.main()
    except SystemExit:
        pass
    finally:
        wall = time.monotonic() - _t0[0]
        shutil.rmtree(tmp, ignore_errors=True)
    res = summary(_acc, wall)
    for n, v in res.items():
        print(f"{n:12s} {json.dumps(v)}")
    if args.json:
        args.json.write_text(json.dumps({"wall_s": round(wall, 1), "sources": res}, indent=1))


if __name__ == "__main__":
    main()
