"""Fleet benchmark: a store of 1,000 hosts x 15 minutes, DuckDB and Spark side by side, push throughput.

THE STORE IS BUILT FROM THE REAL FIXTURE TAPES, RE-HOSTED AND TIME-SHIFTED. No row is
invented: the four fixture recordings (fixtures/tapes/*, one boot of one VM, 17 s of
real data, 6,858 rows) are laid into one 15-minute tape, each recording shifted to
start 225 s after the previous one (all boottime columns moved together), written by
the real TapeWriter; each of the 1,000 hosts is a copy of that tape (parts hard-linked)
whose manifest names the host `node-NNNN` and moves its wall clock by NNNN x 7 ms.
Every host thus holds four real incidents (pod births, throttling, an OOM kill) in
15 minutes, and the store 6.9 million rows in 79,000 parts.

Measured: `nodetape push` of the hosts' tapes into a directory store (parts/s, MB/s,
with the fsync of every part); `pod_births` and `throttle_timeline` over all hosts and
over one host (`--hosts node-0042`) on DuckDB (opening the store included) and on
Spark local mode; whether both engines gave identical rows (every named query on the
fixture tapes pushed into a store, and the two fleet queries at 1,000 hosts).

Run alone: `python -m bench.bench_fleet [--hosts N]` (it merges its keys into
bench/results.json and its section into BENCHMARKS.md). Other work shares the 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .common import REPO, WORK, median_spread

FIXTURES = sorted((REPO / "fixtures" / "tapes").iterdir())
SPACING_NS = 225 * 10**9   # each fixture recording starts this long after the previous one
WINDOW_NS = 900 * 10**9    # 15 minutes
JITTER_NS = 7 * 10**6      # per-host wall-clock shift


def build_template(out: Path) -> Path:
    """One 15-minute tape holding the four fixture recordings, time-shifted apart (real TapeWriter)."""
    from nodetape.schemas import SCHEMA_VERSION, TABLES
    from nodetape.tape.format import new_manifest
    from nodetape.tape.reader import open_tape
    from nodetape.tape.writer import TapeWriter

    tapes = [open_tape(f) for f in FIXTURES]
    tapes.sort(key=lambda t: t.manifest["start_ns"])
    base = tapes[0].manifest
    start = base["start_ns"]
    manifest = new_manifest(host=dict(base["host"]), clock_pair=(start, start + base["clock"]["offset_ns"]),
                            cgroup=base["cgroup"], options={**base["options"], "bench": (
                                "fixture tapes re-hosted and time-shifted (bench/bench_fleet.py), not one recording")},
                            schema_version=SCHEMA_VERSION)
    w = TapeWriter(out, manifest, flush_interval_ns=10**15)
    for k, t in enumerate(tapes):
        shift = start + k * SPACING_NS - t.manifest["start_ns"]
        for table in TABLES:
            for part in t.parts[table.name]:
                data = pq.read_table(part)
                for col in table.time_columns:
                    if col in data.column_names:
                        import pyarrow.compute as pc

                        i = data.column_names.index(col)
                        data = data.set_column(i, col, pc.add(data.column(col), shift))
                for f in table.schema:  # older fixture parts lack newer columns: NULL, as readers show them
                    if f.name not in data.column_names:
                        data = data.append_column(f.name, pa.nulls(data.num_rows, f.type))
                w.append(table.name, data.select(table.schema.names))
                w.flush(scheduled=False)  # one part per fixture part, as the recorder sealed them
    w.manifest["sources"] = base["sources"]
    w.close(start + WINDOW_NS)
    return out


def build_hosts(template: Path, folder: Path, n: int) -> list[Path]:
    """n copies of the template (hard links), each with its own host name and wall-clock shift."""
    m = json.loads((template / "manifest.json").read_text())
    out = []
    for i in range(n):
        host = f"node-{i:04d}"
        d = folder / host
        if not d.exists():
            tmp = folder / f".{host}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            for table_dir in template.iterdir():
                if table_dir.is_dir():
                    (tmp / table_dir.name).mkdir()
                    for p in table_dir.glob("part-*.parquet"):
                        os.link(p, tmp / table_dir.name / p.name)
            mm = json.loads(json.dumps(m))
            mm["host"]["hostname"] = host
            shift = i * JITTER_NS
            mm["clock"]["offset_ns"] += shift
            mm["clock"]["realtime_ns"] += shift
            mm["clock"]["snapshots"] = [[b, r + shift] for b, r in mm["clock"]["snapshots"]]
            (tmp / "manifest.json").write_text(json.dumps(mm))
            os.rename(tmp, d)
        out.append(d)
    return out


def _timed(fn, reps: int) -> tuple[dict, object]:
    times, result = [], None
    for _ in range(reps):
        t0 = time.monotonic()
        result = fn()
        times.append(time.monotonic() - t0)
    return median_spread(times), result


def _rows(table) -> list:
    return [tuple(r.values()) for r in table.to_pylist()]


def prepare(n_hosts: int) -> dict:
    """Template, host tapes and the store (not timed: the store is what the queries read)."""
    from nodetape.store.push import push

    base = WORK / "fleet"
    template = base / "template"
    if not (template / "manifest.json").exists():
        shutil.rmtree(template, ignore_errors=True)
        base.mkdir(parents=True, exist_ok=True)
        build_template(template)
    hosts = build_hosts(template, base / "hosts", n_hosts)
    store = base / f"store-{n_hosts}"
    st = push(hosts, str(store), stream=None)  # idempotent: a second prepare copies nothing
    return {"template": str(template), "store": str(store), "hosts": [str(h) for h in hosts],
            "parts_per_host": sum(1 for _ in template.glob("*/part-*.parquet")),
            "rows_per_host": sum(pq.read_metadata(p).num_rows for p in template.glob("*/part-*.parquet")),
            "store_parts_pushed_now": st.parts_pushed}


def measure_push(hosts: list[str], n: int) -> dict:
    from nodetape.store.push import push

    target = WORK / "fleet" / "push-bench"
    shutil.rmtree(target, ignore_errors=True)
    st = push([Path(h) for h in hosts[:n]], str(target), stream=None)
    again = push([Path(h) for h in hosts[:n]], str(target), stream=None)
    shutil.rmtree(target, ignore_errors=True)
    return {"hosts": n, "parts": st.parts_pushed, "bytes": st.bytes_pushed, "seconds": st.seconds,
            "parts_per_s": st.parts_pushed / st.seconds, "mb_per_s": st.bytes_pushed / 1e6 / st.seconds,
            "repush_parts_per_s": again.parts_skipped / again.seconds}


def measure_queries(store: str, engine: str, reps: int) -> dict:
    from nodetape import fleet

    out = {}
    for name in ("pod_births", "throttle_timeline"):
        for label, hosts in (("all_hosts", None), ("one_host", "node-0042")):
            stats, table = _timed(lambda: fleet.query([store], name, {}, hosts=hosts, engine=engine), reps)
            out[f"{name}_{label}"] = {"s": stats, "rows": table.num_rows}
            out[f"_{name}_{label}_table"] = table
    return out


def spark_matches_on_fixtures() -> dict:
    """Every named query on the fixture tapes pushed into a store: identical rows on both engines?"""
    from nodetape import fleet
    from nodetape.queries import catalog
    from nodetape.store.push import push

    store = WORK / "fleet" / "fixture-store"
    push(FIXTURES, str(store), stream=None)
    same = {}
    for name in catalog():
        d = fleet.query([str(store)], name, {})
        s = fleet.query([str(store)], name, {}, engine="spark")
        same[name] = _rows(d) == _rows(s) and d.schema == s.schema
    return same
