"""Compaction: parts per table in a 15-minute window, and opening the tape of a 30-minute run.

    flock /tmp/nodetape-kernel.lock .venv/bin/python -m bench.bench_compact [--runs 3]

Two measurements, both on real recorder rows (as root):

1. `window`: a real 60 s recording (every source, default 2 s flush) gives the
   rows; then a TapeWriter with `--retain 15m` replays 30 minutes of flushes
   (900, one per simulated 2 s, each flush the rows of one recorded flush, time
   shifted) through the recorder's own flush path (install finished merges,
   flush, plan the next batch on the background thread). The simulated clocks
   drive retention and grace periods; the merges are real and are waited for
   before the next flush (their wall time is reported: a batch must fit in the
   2 s it has in a recorder). Reports the most parts any table held in the
   window after it filled, and the time to open the closed tape and count
   recorder_stats (what bench/soak.py times at the end of its run), with and
   without compaction.
2. `live`: a real recording, time-scaled: `--retain 90s --flush 200ms` for 4
   minutes is the same 450 flushes per window as `--retain 15m` at 2 s; the
   manifest's parts per table are sampled every second. Reports the maximum,
   the recorder's longest tick lag (recorder_stats.lag_ns) and its CPU, with
   compaction on and off (off: `Compactor.schedule` stubbed in the subprocess).

Results go to bench/work/compact.json; the headline keys (min-max over the runs) to
bench/compact_results.json, which bench/report.py puts into bench/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .common import REPO, WORK, nodetape_cmd

FLUSH_NS = 2_000_000_000
RETAIN_NS = 900_000_000_000


def record_source(out: Path, seconds: int = 60) -> Path:
    """A real recording, compaction off: one part per table per flush."""
    if out.exists():
        shutil.rmtree(out)
    subprocess.run([sys.executable, "-c", LIVE_STUB, "record", str(out), "--duration", f"{seconds}s", "--quiet"],
                   check=True, capture_output=True, timeout=seconds + 180, cwd=REPO)
    return out


def _parts(src: Path) -> dict[str, list]:
    """The recorded parts of each table, as Arrow tables, in order."""
    import pyarrow.parquet as pq

    from nodetape.tape.reader import open_tape

    return {name: [pq.read_table(p) for p in parts] for name, parts in open_tape(src).parts.items() if parts}


def _at(t, tc: str, now_ns: int):
    """The part's rows moved in time so its newest row is `now_ns` (spacing kept)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if tc not in t.column_names or t.num_rows == 0:
        return t
    col = t.column(tc)
    shift = now_ns - pc.max(col).as_py()
    return t.set_column(t.column_names.index(tc), tc, pc.add(col, pa.scalar(shift, pa.int64())).cast(col.type))


class _Clock:
    def __init__(self, t: int):
        self.t = t

    def __call__(self) -> int:
        return self.t


def window_run(src: Path, out: Path, compact: bool, minutes: float = 30.0) -> dict:
    from nodetape.schemas import table as table_of
    from nodetape.tape.compact import Compactor, Policy
    from nodetape.tape.format import read_manifest
    from nodetape.tape.writer import TapeWriter

    parts = _parts(src)
    if out.exists():
        shutil.rmtree(out)
    base = 10**12
    mono, boot = _Clock(0), _Clock(base)
    m = read_manifest(src)
    from nodetape.tape.format import Manifest
    man = Manifest.derived(m, start_ns=base)
    man.clock.pairs = [[base, base + m.clock.offset_ns]]
    w = TapeWriter(out, man, retain_ns=RETAIN_NS, flush_interval_ns=FLUSH_NS, clock=mono, boot_clock=boot)
    c = Compactor(w, Policy.for_window(FLUSH_NS, RETAIN_NS)) if compact else None
    n = int(minutes * 60e9 // FLUSH_NS)
    worst, worst_table, batch_max_s = 0, None, 0.0
    for i in range(n):
        boot.t = base + (i + 1) * FLUSH_NS
        for name, ps in parts.items():
            w.append(name, _at(ps[i % len(ps)], table_of(name).time_column, boot.t - 1))
        mono.t = (i + 1) * FLUSH_NS
        if c is not None:
            t0 = time.perf_counter()
            c.wait()
            batch_max_s = max(batch_max_s, time.perf_counter() - t0)
            c.install_done()
        w.flush()
        if c is not None:
            c.schedule()
        if (i + 1) * FLUSH_NS >= RETAIN_NS:
            for name, ps in w.ledger.parts.items():
                if len(ps) > worst:
                    worst, worst_table = len(ps), name
    if c is not None:
        c.wait()
        c.stop()
    w.close(boot.t)
    return {"compact": compact, "flushes": n, "max_parts_per_table": worst, "worst_table": worst_table,
            "open_s": _open_s(out), "parts_total": sum(len(e.parts) for e in read_manifest(out).tables.values()),
            "merges": c.stats.to_json() if c is not None else None, "longest_wait_for_batch_s": batch_max_s}


def _open_s(tape: Path) -> float:
    """Open the tape and count recorder_stats, as bench/soak.py times it at the end of its run: in a
    process whose imports and DuckDB are warm (a fixture tape opened first), the first open of this one."""
    code = ("import sys,time; import nodetape, nodetape.api, duckdb; "
            "nodetape.open([sys.argv[2]]).sql('SELECT count(*) AS n FROM recorder_stats').to_pylist(); "
            "t=time.perf_counter(); "
            "nodetape.open([sys.argv[1]]).sql('SELECT count(*) AS n FROM recorder_stats').to_pylist(); "
            "print(time.perf_counter()-t)")
    warm = REPO / "fixtures" / "tapes" / "oom-kill"
    return float(subprocess.run([sys.executable, "-c", code, str(tape), str(warm)], capture_output=True,
                                text=True, check=True, cwd=REPO).stdout)


LIVE_STUB = ("import sys; import nodetape.tape.compact as c; c.Compactor.schedule = lambda self: 0; "
             "from nodetape.cli import main; sys.argv = ['nodetape'] + sys.argv[1:]; main()")


def live_run(out: Path, compact: bool, seconds: int = 150) -> dict:
    if out.exists():
        shutil.rmtree(out)
    args = ["record", str(out), "--retain", "90s", "--flush", "200ms", "--duration", f"{seconds}s", "--quiet"]
    cmd = nodetape_cmd(*args) if compact else [sys.executable, "-c", LIVE_STUB, *args]
    p = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True)
    worst, worst_table, t0 = 0, None, time.monotonic()
    try:
        while p.poll() is None:
            time.sleep(1.0)
            try:
                m = json.loads((out / "manifest.json").read_text())
            except (OSError, ValueError):
                continue
            if time.monotonic() - t0 >= 100:  # the 90 s window has filled
                for name, e in m["tables"].items():
                    if len(e.get("parts", [])) > worst:
                        worst, worst_table = len(e["parts"]), name
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        p.wait(timeout=120)
    import nodetape

    r = nodetape.open([out]).sql(
        "SELECT max(lag_ns) FILTER (WHERE ts_ns > (SELECT min(ts_ns) FROM recorder_stats)) AS lag, "
        "max(recorder_cpu_usec) - min(recorder_cpu_usec) AS cpu, "
        "(max(ts_ns) - min(ts_ns)) AS span FROM recorder_stats WHERE source = 'recorder'").to_pylist()[0]
    # the first row's lag is the sources' start-up (eBPF compiles), not a tick: left out
    m = json.loads((out / "manifest.json").read_text())
    return {"compact": compact, "exit_code": p.returncode, "max_parts_per_table": worst, "worst_table": worst_table,
            "max_tick_lag_ms": r["lag"] / 1e6, "cpu_pct": 100 * r["cpu"] * 1e3 / max(1, r["span"]),
            "compaction": (m.get("writer") or {}).get("compaction")}


def rowgroup_run(src: Path, rows: int = 800_000) -> list[dict]:
    """One compacted cgroup_samples part of `rows` real rows (repeated, time-spread over 162 s, the
    top tier at 2 s flushes), written with several row group sizes: bytes, footer bytes, open
    (footer validation) and a 10 s time-range count in DuckDB (median of 5)."""
    import statistics

    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    from nodetape.schemas import table as table_of
    from nodetape.tape.compact import encode_sorted
    from nodetape.tape.reader import _validate_part

    base = pa.concat_tables(_parts(src)["cgroup_samples"])
    reps = -(-rows // base.num_rows)
    t = pa.concat_tables([base] * reps).slice(0, rows)
    ts = pa.array([i * 162_000_000_000 // rows for i in range(rows)], pa.int64())
    t = t.set_column(t.column_names.index("ts_ns"), "ts_ns", ts)
    out = []
    for rg in (1024, 4096, 16384, 131072, 1 << 20):
        f = WORK / "compact" / f"rg-{rg}.parquet"
        data = encode_sorted(t, rg)
        f.write_bytes(data.to_pybytes())
        meta = pq.read_metadata(f)
        t0 = time.perf_counter()
        _validate_part(f, table_of("cgroup_samples"))
        open_s = time.perf_counter() - t0
        con = duckdb.connect()
        times = []
        for k in range(5):
            lo = (20 + 25 * k) * 1_000_000_000
            t0 = time.perf_counter()
            con.execute(f"SELECT count(*), avg(cpu_usage_usec) FROM read_parquet('{f}') "
                        f"WHERE ts_ns >= {lo} AND ts_ns < {lo + 10_000_000_000}").fetchall()
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        con.execute(f"SELECT count(*), avg(cpu_usage_usec) FROM read_parquet('{f}')").fetchall()
        full_s = time.perf_counter() - t0
        out.append({"row_group_rows": rg, "row_groups": meta.num_row_groups, "bytes": f.stat().st_size,
                    "footer_bytes": meta.serialized_size, "validate_s": open_s,
                    "range_10s_query_s": statistics.median(times), "full_scan_s": full_s})
        f.unlink()
    return out


def _minmax(vals: list[float]) -> dict:
    return {"min": round(min(vals), 4), "max": round(max(vals), 4), "n": len(vals)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", choices=("window", "live", "rowgroups"), default=None)
    ap.add_argument("--live-mode", choices=("on", "off", "both"), default="both")
    ap.add_argument("--source", type=Path, default=None, help="a recorded tape to take rows from")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_compact: run as root (every source)", file=sys.stderr)
        return 2
    work = WORK / "compact"
    work.mkdir(parents=True, exist_ok=True)
    src = args.source or (record_source(work / "source") if args.only in (None, "window") else work / "source")
    res: dict = {"window": [], "live": []}
    if (WORK / "compact.json").exists():
        res = json.loads((WORK / "compact.json").read_text())
    if args.only == "rowgroups":
        res["rowgroups"] = rowgroup_run(src)
        for r in res["rowgroups"]:
            print(json.dumps(r), flush=True)
        (WORK / "compact.json").write_text(json.dumps(res, indent=2))
        return 0
    if args.only != "live":
        res["window"] = []
    for i in range(args.runs if args.only != "live" else 0):
        for compact in (True, False):
            r = window_run(src, work / f"window-{int(compact)}", compact)
            print(json.dumps(r), flush=True)
            res["window"].append(r)
    if args.only in (None, "live"):
        # appended: each run may take the lock on its own (bench/work/compact.json keeps them)
        for i in range(args.runs):
            for compact in ((True, False) if args.live_mode == "both" else (args.live_mode == "on",)):
                r = live_run(work / f"live-{int(compact)}", compact)
                print(json.dumps(r), flush=True)
                res["live"].append(r)
    (WORK / "compact.json").write_text(json.dumps(res, indent=2))
    on = [r for r in res["window"] if r["compact"]]
    off = [r for r in res["window"] if not r["compact"]]
    summary = {} if not on else {
        "parts_per_table_15m": _minmax([r["max_parts_per_table"] for r in on]),
        "parts_per_table_15m_uncompacted": _minmax([r["max_parts_per_table"] for r in off]),
        "tape_open_s_soak": _minmax([r["open_s"] for r in on]),
        "tape_open_s_soak_uncompacted": _minmax([r["open_s"] for r in off]),
    }
    for mode in ("on", "off"):
        runs = [r for r in res["live"] if r["compact"] == (mode == "on")]
        if runs:
            summary[f"live_{mode}"] = {k: _minmax([r[k] for r in runs])
                                       for k in ("max_parts_per_table", "max_tick_lag_ms", "cpu_pct")}
    print(json.dumps(summary, indent=2))
    if on:
        (REPO / "bench" / "compact_results.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
