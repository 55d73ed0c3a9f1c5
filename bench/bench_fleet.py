"""Fleet benchmark: a store of 1,000 hosts x 15 minutes, DuckDB and Spark side by side, push throughput.

THE STORE IS BUILT FROM THE REAL FIXTURE TAPES, RE-HOSTED AND TIME-SHIFTED. No row is
invented: the four fixture recordings (fixtures/tapes/*, one boot of one VM, 17 s of
real data, 6,858 rows) are laid into one 15-minute tape, each recording shifted to
start 225 s after the previous one (all boottime columns moved together), written by
the real TapeWriter; each of the 1,000 hosts is a copy of that tape (parts hard-linked)
whose manifest names the host `node-NNNN` and moves its wall clock by NNNN x 7 ms.
Every host thus holds four real incidents (pod births, throttling, an OOM kill) in
15 minutes.

Measured: `nodetape push` of the hosts' tapes into a directory store (parts/s, MB/s,
with the fsync of every part); `nodetape compact` of the store (one file per table
and date for all hosts); `pod_births` and `throttle_timeline` over all hosts and over
one host (`--hosts node-0042`) on DuckDB (opening the store included) over the
compacted store, beside the same store with one file per host and table (the peer)
and as sealed, and on Spark local mode over the compacted store; whether both engines
gave identical rows (every named query on the fixture tapes pushed into a store, and
the two fleet queries at 1,000 hosts).

Run alone: `python -m bench.bench_fleet [--hosts N]` (it merges its keys into
bench/results.json and its section into BENCHMARKS.md). Other work shares the 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .common import REPO, WORK, median_spread, write_section

FIXTURES = sorted((REPO / "fixtures" / "tapes").iterdir())
SPACING_NS = 225 * 10**9   # each fixture recording starts this long after the previous one
WINDOW_NS = 900 * 10**9    # 15 minutes
JITTER_NS = 7 * 10**6      # per-host wall-clock shift


def build_template(out: Path, compact: bool = False) -> Path:
    """One 15-minute tape holding the four fixture recordings, time-shifted apart (real TapeWriter).

    As sealed: one part per fixture part (79 parts, ~87 rows each, as the fixture recorder's
    1 s flushes sealed them). Compact: one part per table for the 15 minutes (7 parts), what
    a recorder with a 15-minute flush, or a compaction of the store, would hold.
    """
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
                if not compact:
                    w.flush(scheduled=False)  # one part per fixture part, as the recorder sealed them
    w.manifest.sources = dict(base.sources)
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


def prepare(n_hosts: int, compact: bool = False) -> dict:
    """Template, host tapes and the store (not timed: the store is what the queries read)."""
    from nodetape.store.push import push

    base = WORK / "fleet"
    kind = "compact" if compact else "sealed"
    template = base / f"template-{kind}"
    if not (template / "manifest.json").exists():
        shutil.rmtree(template, ignore_errors=True)
        base.mkdir(parents=True, exist_ok=True)
        build_template(template, compact)
    hosts = build_hosts(template, base / f"hosts-{kind}", n_hosts)
    store = base / f"store-{kind}-{n_hosts}"
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


def fleet_query(store: str, name: str, hosts: str | None = None, engine: str = "duckdb"):
    """A named query over a store, opening it included (as `nodetape query STORE NAME` does)."""
    import nodetape

    with nodetape.open(store, hosts=hosts, engine=engine) as t:
        return t.query(name)


def measure_queries(store: str, engine: str, reps: int, n_hosts: int = 1000) -> dict:
    out = {}
    for name in ("pod_births", "throttle_timeline"):
        for label, hosts in (("all_hosts", None), ("one_host", f"node-{min(42, n_hosts - 1):04d}")):
            stats, table = _timed(lambda: fleet_query(store, name, hosts, engine), reps)
            out[f"{name}_{label}"] = {"s": stats, "rows": table.num_rows}
            out[f"_{name}_{label}_table"] = table
    return out


def spark_matches_on_fixtures() -> dict:
    """Every named query on the fixture tapes pushed into a store: identical rows on both engines?"""
    from nodetape.queries import catalog
    from nodetape.store.push import push

    store = WORK / "fleet" / "fixture-store"
    push(FIXTURES, str(store), stream=None)
    same = {}
    for name in catalog():
        d = fleet_query(str(store), name)
        s = fleet_query(str(store), name, engine="spark")
        same[name] = _rows(d) == _rows(s) and d.schema == s.schema
    return same


def _strip(d: dict) -> dict:
    return {k: v for k, v in d.items() if not k.startswith("_")}


def _same(a, b) -> bool:
    return _rows(a) == _rows(b)


def run_prepare(n_hosts: int) -> dict:
    out = {"compact": prepare(n_hosts, compact=True), "sealed": prepare(n_hosts, compact=False)}
    out["spark_matches_on_fixtures"] = spark_matches_on_fixtures()
    for v in ("compact", "sealed"):
        out[v].pop("hosts")
    return out


def _parquet_bytes(store: Path) -> int:
    return sum(p.stat().st_size for p in store.glob("*/**/*.parquet"))


def measure_compaction(n_hosts: int, reps: int = 3) -> dict:
    """`nodetape compact` of the store with one file per host and table, each time on a fresh hard-link copy
    (compaction unlinks the copy's links only); the last compacted copy is the store the queries read.
    Once more on a copy of the store as sealed (1 s parts): what compacting a recorder's own parts costs."""
    from nodetape.store.compact import compact

    base = WORK / "fleet"
    out = {}
    for kind, n in (("compact", reps), ("sealed", 1)):
        src, dst = base / f"store-{kind}-{n_hosts}", base / f"store-compacted-from-{kind}-{n_hosts}"
        times, st = [], None
        for _ in range(n):
            shutil.rmtree(dst, ignore_errors=True)
            subprocess.run(["cp", "-al", str(src), str(dst)], check=True)
            st = compact(str(dst))
            times.append(st.seconds)
        out[kind] = {"s": median_spread(times), "parts": st.parts, "rows": st.rows, "files": st.files,
                     "bytes": st.bytes, "store_parquet_bytes_before": _parquet_bytes(src), "store": str(dst)}
        if kind == "sealed":
            shutil.rmtree(dst, ignore_errors=True)
    return out


FLEET_KEYS = ("pod_births_all_hosts", "pod_births_one_host", "throttle_timeline_all_hosts", "throttle_timeline_one_host")


def run_measure(n_hosts: int, push_hosts: int = 100) -> dict:
    base = WORK / "fleet"
    sealed_hosts = [str(base / "hosts-sealed" / f"node-{i:04d}") for i in range(n_hosts)]
    res: dict = {"hosts": n_hosts, "push": measure_push(sealed_hosts, push_hosts)}
    res["compaction"] = measure_compaction(n_hosts)
    compacted = res["compaction"]["compact"]["store"]
    res["duckdb_compacted"] = measure_queries(compacted, "duckdb", 3, n_hosts)
    res["duckdb_compact"] = measure_queries(str(base / f"store-compact-{n_hosts}"), "duckdb", 3, n_hosts)
    res["duckdb_sealed"] = measure_queries(str(base / f"store-sealed-{n_hosts}"), "duckdb", 1, n_hosts)
    res["spark_compacted"] = measure_queries(compacted, "spark", 1, n_hosts)
    res["compacted_matches_per_host_store"] = {
        k: _same(res["duckdb_compacted"][f"_{k}_table"], res["duckdb_compact"][f"_{k}_table"]) for k in FLEET_KEYS}
    res["spark_matches_duckdb_1000_hosts"] = {
        k: _same(res["duckdb_compacted"][f"_{k}_table"], res["spark_compacted"][f"_{k}_table"]) for k in FLEET_KEYS}
    for k in ("duckdb_compacted", "duckdb_compact", "duckdb_sealed", "spark_compacted"):
        res[k] = _strip(res[k])
    return res


def headline(prep: dict, res: dict) -> dict:
    d = res["duckdb_compacted"]
    same = all(prep["spark_matches_on_fixtures"].values()) and all(res["spark_matches_duckdb_1000_hosts"].values())
    return {
        "fleet_query_s_1000_hosts_pod_births": round(d["pod_births_all_hosts"]["s"]["median"], 2),
        "fleet_query_s_1000_hosts_throttle_timeline": round(d["throttle_timeline_all_hosts"]["s"]["median"], 2),
        "fleet_spark_matches_duckdb": same,
        "push_parts_per_s": round(res["push"]["parts_per_s"]),
        "fleet_compact_s_1000_hosts": round(res["compaction"]["compact"]["s"]["median"], 1),
    }


def write_outputs(prep: dict, res: dict) -> dict:
    head = headline(prep, res)
    from .fleet_render import render

    write_section("fleet", "## Fleet: a store of 1,000 hosts x 15 minutes", {"prepare": prep, "measure": res}, head,
                  render(prep, res, head))
    return head


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_fleet", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phase", choices=("prepare", "measure", "all", "render"), default="all",
                    help="render: rewrite the BENCHMARKS.md section from bench/results.json")
    ap.add_argument("--hosts", type=int, default=1000)
    args = ap.parse_args(argv)
    prep_file = WORK / "fleet" / "prepare.json"
    if args.phase == "render":
        saved = json.loads((REPO / "bench" / "results.json").read_text())["sections"]["fleet"]["result"]
        write_outputs(saved["prepare"], saved["measure"])
        return 0
    if args.phase in ("prepare", "all"):
        prep = run_prepare(args.hosts)
        prep_file.write_text(json.dumps(prep, indent=2))
    if args.phase in ("measure", "all"):
        prep = json.loads(prep_file.read_text())
        res = run_measure(args.hosts)
        print(json.dumps(write_outputs(prep, res), indent=2))
    return 0


def run(quick: bool = False) -> dict:
    """The suite's entry (bench/__main__.py): prepare and measure with 100 hosts when quick."""
    n = 100 if quick else 1000
    prep, res = run_prepare(n), run_measure(n, push_hosts=min(100, n))
    return {"prepare": prep, "measure": res, **headline(prep, res)}


if __name__ == "__main__":
    sys.exit(main())
