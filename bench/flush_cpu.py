"""Where a live recorder's flushes and merges spend CPU, without a profiler's bias (docs/idle.md).

cProfile inflates pure-Python code many times over and py-spy counts a thread blocked in
fsync as busy, so this tool wraps the named steps of a flush and of a merge and adds up the
*thread* CPU time (`time.thread_time`: user + system of the calling thread, nothing while it
sleeps or waits on the disk) spent inside each call. It then runs `nodetape record` in this
process (every source this node can run, --interval 1s, default --flush), skips the start-up,
and prints per step: calls, CPU per call, and % of one core over the measured wall time,
beside each thread's own CPU from /proc/self/task (which the steps must add up under).

Steps nest (a part's encode is inside _flush_table, inside flush): each row is inclusive of the
rows indented under it. A wrapper costs ~1 us (two clock reads); a part has ~10 of them.

    python -m bench.flush_cpu --seconds 90 [--flush 2s] [--out /tmp/flushcpu.tape]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time
import types

from .common import thread_timed

# (label, module, attribute path, depth): the steps, in the order printed
STEPS = [
    ("loop: Recorder._flush", "nodetape.recorder.loop", "Recorder._flush", 0),
    ("sync manifest sources", "nodetape.recorder.loop", "Recorder._sync_manifest_sources", 1),
    ("install finished merges", "nodetape.tape.compact", "Compactor.install_done", 1),
    ("folder fsync", "nodetape.tape.compact", "fsync_dir", 2),
    ("writer.flush", "nodetape.tape.writer", "TapeWriter.flush", 1),
    ("a part (_flush_table)", "nodetape.tape.writer", "TapeWriter._flush_table", 2),
    ("encode", "nodetape.tape.writer", "encode", 3),
    ("pq.write_table", "nodetape.tape.partfile", "pq.write_table", 4),
    ("checksum", "nodetape.tape.writer", "blake2b_hex", 3),
    ("open+write+fsync+close", "nodetape.tape.writer", "_write_file", 3),
    ("rename", "nodetape.tape.writer", "os.replace", 3),
    ("folder fsync", "nodetape.tape.writer", "fsync_dir", 3),
    ("seal: temp file, rename (sealing.py)", "nodetape.tape.sealing", "Sealer.seal", 3),
    ("rename", "nodetape.tape.sealing", "os.replace", 4),
    ("time column max", "nodetape.tape.writer", "pc.max", 3),
    ("time column max", "nodetape.tape.writer", "column_max", 3),
    ("on_rows (memo)", "nodetape.tape.compact", "Compactor.remember", 3),
    ("ledger.add", "nodetape.tape.retention", "PartLedger.add", 3),
    ("folder fsyncs + on_rows (sync_folders)", "nodetape.tape.writer", "TapeWriter.sync_folders", 2),
    ("folder fsync", "nodetape.tape.sealing", "fsync_dir", 3),
    ("folder fsync (kept descriptor)", "nodetape.tape.sealing", "Sealer.fsync_folder", 3),
    ("retention enforce", "nodetape.tape.retention", "PartLedger.enforce", 2),
    ("manifest rewrite", "nodetape.tape.writer", "TapeWriter.write_manifest", 2),
    ("manifest to_dict", "nodetape.tape.format", "Manifest.to_dict", 3),
    ("manifest JSON+write+fsync+rename", "nodetape.tape.writer", "atomic_write_json", 3),
    ("manifest text (cached pieces)", "nodetape.tape.manifest_text", "ManifestText.text", 3),
    ("manifest write+fsync+rename", "nodetape.tape.writer", "atomic_write_text", 3),
    ("unlink pending", "nodetape.tape.retention", "PartLedger.unlink_pending", 2),
    ("plan merges", "nodetape.tape.compact", "Compactor.schedule", 1),
    ("malloc trim", "nodetape.recorder.memory", "Trimmer.maybe", 1),
    ("compactor: a merge", "nodetape.tape.compact", "merge", 0),
    ("merged_table (read, concat, sort)", "nodetape.tape.compact", "merged_table", 1),
    ("read a part file", "nodetape.tape.compact", "_read", 2),
    ("in-order check", "nodetape.tape.compact", "in_order", 2),
    ("sort", "nodetape.tape.compact", "pc.sort_indices", 2),
    ("encode_sorted", "nodetape.tape.compact", "encode_sorted", 1),
    ("checksum", "nodetape.tape.compact", "blake2b_hex", 1),
    ("open+write+fsync+close", "nodetape.tape.compact", "_write_file", 1),
]


class Acc:
    """Calls and thread CPU seconds per step; a lock because two threads add (loop and compactor)."""

    def __init__(self):
        self.calls: dict[str, int] = {}
        self.cpu: dict[str, float] = {}
        self.lock = threading.Lock()

    def add(self, label: str, dt: float) -> None:
        with self.lock:
            self.calls[label] = self.calls.get(label, 0) + 1
            self.cpu[label] = self.cpu.get(label, 0.0) + dt

    def snapshot(self) -> tuple[dict, dict]:
        with self.lock:
            return dict(self.calls), dict(self.cpu)


def _timed(fn, label: str, acc: Acc):
    return thread_timed(fn, lambda dt, *_: acc.add(label, dt))


def _proxy(mod, label: str, attr: str, acc: Acc):
    """A stand-in for a module (pq, pc, os) in one caller's namespace with one function timed."""
    ns = types.SimpleNamespace(**{k: getattr(mod, k) for k in dir(mod) if not k.startswith("__")})
    setattr(ns, attr, _timed(getattr(mod, attr), label, acc))
    return ns


def instrument(acc: Acc) -> list[str]:
    """Wrap every step that exists in this tree (a step missing here is listed, not fatal)."""
    import importlib

    missing = []
    for label, modname, path, _ in STEPS:
        key = f"{label}@{modname}.{path}"
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError:  # a module this tree does not have (the other side of an A/B)
            missing.append(key)
            continue
        head, _, tail = path.partition(".")
        owner = getattr(mod, head, None)
        if owner is None or (tail and not hasattr(owner, tail)):
            missing.append(key)
        elif not tail:
            setattr(mod, head, _timed(owner, key, acc))
        elif isinstance(owner, type):
            setattr(owner, tail, _timed(getattr(owner, tail), key, acc))
        else:
            setattr(mod, head, _proxy(owner, key, tail, acc))
    return missing


def thread_cpu() -> dict[str, float]:
    """CPU seconds (utime + stime) per thread of this process (its Python name), from /proc/self/task."""
    tck = os.sysconf("SC_CLK_TCK")
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                s = f.read()
        except OSError:
            continue
        name = names.get(int(tid), "other")
        fields = s.rsplit(")", 1)[1].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tck
    return out


def process_cpu() -> float:
    t = os.times()
    return t.user + t.system


def _measure(acc: Acc, warm_s: float, seconds: float, marks: dict) -> None:
    time.sleep(warm_s)
    marks["a"] = (time.monotonic(), process_cpu(), thread_cpu(), acc.snapshot())
    time.sleep(seconds)
    marks["b"] = (time.monotonic(), process_cpu(), thread_cpu(), acc.snapshot())


def report(marks: dict, missing: list[str]) -> str:
    (t0, p0, th0, (c0, s0)), (t1, p1, th1, (c1, s1)) = marks["a"], marks["b"]
    wall = t1 - t0
    lines = [f"measured {wall:.1f} s; process CPU {100 * (p1 - p0) / wall:.3f}% of a core",
             "threads: " + ", ".join(f"{n} {100 * (th1.get(n, 0) - th0.get(n, 0)) / wall:.3f}%"
                                     for n in sorted(th1) if th1.get(n, 0) - th0.get(n, 0) > 0),
             f"{'step':48s} {'calls':>6s} {'us/call':>9s} {'% core':>7s}"]
    for label, modname, path, depth in STEPS:
        key = f"{label}@{modname}.{path}"
        n = c1.get(key, 0) - c0.get(key, 0)
        cpu = s1.get(key, 0.0) - s0.get(key, 0.0)
        if key in missing or n == 0:
            continue
        lines.append(f"{'  ' * depth + label:48s} {n:6d} {1e6 * cpu / n:9.1f} {100 * cpu / wall:7.3f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=90)
    ap.add_argument("--warm", type=float, default=12, help="start-up skipped (BPF compiles)")
    ap.add_argument("--flush", default="2s")
    ap.add_argument("--out", default="/tmp/nodetape-flushcpu.tape")
    a = ap.parse_args(argv)
    from nodetape.recorder import memory

    memory.configure()  # as `nodetape record` does, before pyarrow loads
    acc = Acc()
    missing = instrument(acc)
    shutil.rmtree(a.out, ignore_errors=True)
    marks: dict = {}
    threading.Thread(target=_measure, args=(acc, a.warm, a.seconds, marks), daemon=True).start()
    from nodetape.cli import run

    dur = f"{int(a.warm + a.seconds + 2)}s"
    run(["record", a.out, "--duration", dur, "--flush", a.flush, "--interval", "1s", "--quiet"])
    print(report(marks, missing))
    if missing:
        print("not in this tree:", ", ".join(missing), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
