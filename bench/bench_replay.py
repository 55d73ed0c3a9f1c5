"""6. Replay: events/s to jsonl and to a new tape, peak memory, and pacing accuracy.

Throughput and memory run on a synthetic tape written with the real TapeWriter
(generated rows, not a recording: this measures the merge and the sinks, not
the kernel). Pacing accuracy re-enacts a tape with `--into` at --speed 1 and
compares each event's recorded gap from the window start with the gap at which
the re-enactment applied it (monotonic clock).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .common import REPO, WORK, median_spread

S = 1_000_000_000
SLOTS = 200  # cgroups sampled every second
SYSCALLS_PER_S = 8


def make_tape(out: Path, rows: int) -> dict:
    """A tape of about `rows` rows in cgroup_samples, psi_samples and syscall_counts, one
    second at a time in time order (what a recorder writes); returns {table: rows}."""
    sys.path.insert(0, str(REPO))
    from nodetape.tape.format import new_manifest
    from nodetape.schemas import SCHEMA_VERSION, batch
    from nodetape.tape.writer import TapeWriter

    per_s = SLOTS * (2 + SYSCALLS_PER_S)
    seconds = max(1, rows // per_s)
    cg = {"root": "/sys/fs/cgroup", "mode": "hybrid", "hierarchies": {"cpu": "/sys/fs/cgroup/cpu", "unified": "/sys/fs/cgroup/unified"},
          "controllers": {"cpu": "cpu"}}
    m = new_manifest(host={"hostname": "synthetic"}, clock_pair=(S, 1_704_067_200 * S), cgroup=cg,
                     options={"synthetic": "bench/bench_replay.py generated rows, not a recording"}, schema_version=SCHEMA_VERSION)
    w = TapeWriter(out, m)
    paths = [f"/kubepods/burstable/pod{i:08d}-0000-0000-0000-000000000000/{i:064x}" for i in range(SLOTS)]
    slot = np.arange(SLOTS)
    counts = {"cgroup_samples": 0, "psi_samples": 0, "syscall_counts": 0}
    import pyarrow as pa

    pdict = pa.array(paths)
    for t0 in range(0, seconds, 20):
        t = np.arange(t0, min(seconds, t0 + 20))
        tt, ss = np.repeat(t, SLOTS), np.tile(slot, t.size)
        ts = S + tt * S + ss * 1000
        n = ts.size
        path_col = pa.DictionaryArray.from_arrays(pa.array(ss.astype(np.int32)), pdict)
        w.append("cgroup_samples", batch("cgroup_samples", {
            "ts_ns": ts, "hierarchy": ["cpu"] * n, "cgroup_path": path_col, "cgroup_id": ss.astype(np.uint64) + 1000,
            "cpu_usage_usec": tt * 20_000 + ss, "nr_periods": tt * 10, "nr_throttled": tt * 3, "throttled_usec": tt * 9000,
            "cpu_quota_usec": np.full(n, 50_000), "cpu_period_usec": np.full(n, 100_000),
            "memory_current": tt * 4096 + ss, "nr_procs": np.ones(n, np.int64)}))
        w.append("psi_samples", batch("psi_samples", {
            "ts_ns": ts + 1, "scope": path_col, "resource": ["cpu"] * n, "some_avg10": (ss % 100) / 4.0,
            "some_avg60": np.zeros(n), "some_avg300": np.zeros(n), "some_total_usec": tt * 1000 + ss}))
        k = n * SYSCALLS_PER_S
        w.append("syscall_counts", batch("syscall_counts", {
            "interval_start_ns": np.repeat(S + tt * S, SYSCALLS_PER_S), "interval_end_ns": np.repeat(S + (tt + 1) * S, SYSCALLS_PER_S),
            "cgroup_id": np.repeat(ss.astype(np.uint64) + 1000, SYSCALLS_PER_S),
            "syscall_nr": np.tile(np.arange(SYSCALLS_PER_S, dtype=np.int32), n),
            "syscall_name": [f"sys{i}" for i in range(SYSCALLS_PER_S)] * n, "count": np.tile(np.arange(SYSCALLS_PER_S), n) + 1}))
        counts["cgroup_samples"] += n
        counts["psi_samples"] += n
        counts["syscall_counts"] += k
    w.close(S + seconds * S)
    return counts


# Runs in a child so that its peak RSS (ru_maxrss) is the replay's alone.
_CHILD = r"""
import json, sys, time

def hwm_kb():
    # VmHWM: peak RSS of this process's own memory map (ru_maxrss keeps the
    # high-water mark of the forked copy of the parent across exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

from nodetape.replay.command import run_replay
mode, tape, out = sys.argv[1], sys.argv[2], sys.argv[3]
t0 = time.perf_counter()
if mode == "jsonl":
    code = run_replay(tapes=[tape], max_speed=True, output=out, stdout=sys.stderr)
elif mode == "tape":
    code = run_replay(tapes=[tape], out=out, stdout=sys.stderr)
else:
    from nodetape.replay import open as o
    code, n = 0, 0
    for _ in o(tape).events():
        n += 1
dt = time.perf_counter() - t0
print(json.dumps({"code": code, "seconds": dt, "peak_kb": hwm_kb()}))
"""


def replay_child(mode: str, tape: Path, out: Path) -> dict:
    r = subprocess.run([sys.executable, "-c", _CHILD, mode, str(tape), str(out)], capture_output=True, text=True,
                       timeout=1800, cwd=str(REPO))
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def baseline_rss_kb() -> int:
    """Peak RSS of a child that only imports the replay modules: the floor under every figure."""
    code = ("import nodetape.replay.command, nodetape.replay.sinks.tape, pyarrow.parquet\n"
            "print([int(x.split()[1]) for x in open('/proc/self/status') if x.startswith('VmHWM:')][0])")
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO)).stdout)


def pacing_accuracy(work: Path, events: int = 40, gap_ms: float = 50.0) -> dict:
    """Re-enact `events` cgroup creations recorded `gap_ms` apart at --speed 1; the error of
    each applied event's offset from the window start versus its recorded offset."""
    sys.path.insert(0, str(REPO))
    from nodetape.tape.format import new_manifest
    from nodetape.replay.pace import Pacer
    from nodetape.replay.sinks.cgroupfs import CgroupfsSink
    from nodetape.replay.stream import Replay
    from nodetape.schemas import SCHEMA_VERSION, batch
    from nodetape.tape.reader import open_tape
    from nodetape.tape.writer import TapeWriter

    tape = work / "pace-tape"
    shutil.rmtree(tape, ignore_errors=True)
    cg = {"root": "/sys/fs/cgroup", "mode": "v2", "hierarchies": {"unified": "/sys/fs/cgroup"}, "controllers": {}}
    w = TapeWriter(tape, new_manifest(host={"hostname": "synthetic"}, clock_pair=(S, 2 * S), cgroup=cg, options={},
                                      schema_version=SCHEMA_VERSION))
    gap = int(gap_ms * 1e6)
    ts = [S + (i + 1) * gap for i in range(events)]
    w.append("cgroup_events", batch("cgroup_events", {
        "ts_ns": ts, "source": ["inotify"] * events, "kind": ["created"] * events, "hierarchy": ["unified"] * events,
        "cgroup_path": [f"/bench/c{i:04d}" for i in range(events)]}))
    w.close(ts[-1] + gap)
    into = work / "pace-into"
    shutil.rmtree(into, ignore_errors=True)
    rp = Replay([open_tape(tape)])
    sel = rp.select()
    sink = CgroupfsSink(into, rp.manifest["cgroup"])
    sink.prepare()
    pacer = Pacer(1.0, sel.start_ns)
    pacer.start()
    t0 = pacer._anchor  # noqa: SLF001 - the anchor is the measurement origin
    errs = []
    for run, t, vals in rp.rows(sel):
        pacer.wait(t)
        sink.write(run.table.name, dict(zip(run.table.column_names, vals)))
        applied = time.monotonic_ns() - t0
        errs.append(abs(applied - (t - sel.start_ns)) / 1e6)
    shutil.rmtree(into, ignore_errors=True)
    gaps_rec = np.diff(np.array(ts)) / 1e6
    return {"events": events, "recorded_gap_ms": gap_ms, "abs_error_ms": median_spread(errs),
            "p99_error_ms": float(np.percentile(errs, 99)), "recorded_gaps_ms_mean": float(gaps_rec.mean())}


def run(quick: bool = False) -> dict:
    rows = 300_000 if quick else 3_000_000
    work = WORK / "replay"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    tape = work / "tape"
    t0 = time.perf_counter()
    counts = make_tape(tape, rows)
    total = sum(counts.values())
    out: dict = {"synthetic": True, "rows": total, "tables": counts, "generate_s": round(time.perf_counter() - t0, 2),
                 "parquet_mb": round(sum(f.stat().st_size for f in tape.rglob("*.parquet")) / 1e6, 1),
                 "baseline_rss_mb": round(baseline_rss_kb() / 1024, 1)}
    for mode, dest in (("events", work / "none"), ("jsonl", work / "events.jsonl"), ("tape", work / "slice")):
        r = replay_child(mode, tape, dest)
        entry = {"seconds": round(r["seconds"], 2), "events_per_s": round(total / r["seconds"]),
                 "peak_rss_mb": round(r["peak_kb"] / 1024, 1)}
        if mode == "jsonl":
            entry["jsonl_mb"] = round(dest.stat().st_size / 1e6, 1)
        out[mode] = entry
        if dest.is_dir():
            shutil.rmtree(dest)
        elif dest.exists():
            dest.unlink()
    out["pacing"] = pacing_accuracy(work, events=20 if quick else 60)
    shutil.rmtree(work, ignore_errors=True)
    return out


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
