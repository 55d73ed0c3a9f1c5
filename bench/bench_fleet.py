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


def measure_queries(store: str, engine: str, reps: int) -> dict:
    out = {}
    for name in ("pod_births", "throttle_timeline"):
        for label, hosts in (("all_hosts", None), ("one_host", "node-0042")):
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


def run_measure(n_hosts: int, push_hosts: int = 100) -> dict:
    base = WORK / "fleet"
    sealed_hosts = [str(base / "hosts-sealed" / f"node-{i:04d}") for i in range(n_hosts)]
    res: dict = {"hosts": n_hosts, "push": measure_push(sealed_hosts, push_hosts)}
    compact = str(base / f"store-compact-{n_hosts}")
    sealed = str(base / f"store-sealed-{n_hosts}")
    res["duckdb_compact"] = measure_queries(compact, "duckdb", reps=3)
    res["duckdb_sealed"] = measure_queries(sealed, "duckdb", reps=1)
    res["spark_compact"] = measure_queries(compact, "spark", reps=1)
    res["spark_matches_duckdb_1000_hosts"] = {
        k: _same(res["duckdb_compact"][f"_{k}_table"], res["spark_compact"][f"_{k}_table"])
        for k in ("pod_births_all_hosts", "pod_births_one_host", "throttle_timeline_all_hosts",
                  "throttle_timeline_one_host")}
    for k in ("duckdb_compact", "duckdb_sealed", "spark_compact"):
        res[k] = _strip(res[k])
    return res


def headline(prep: dict, res: dict) -> dict:
    d = res["duckdb_compact"]
    same = all(prep["spark_matches_on_fixtures"].values()) and all(res["spark_matches_duckdb_1000_hosts"].values())
    return {
        "fleet_query_s_1000_hosts_pod_births": round(d["pod_births_all_hosts"]["s"]["median"], 2),
        "fleet_query_s_1000_hosts_throttle_timeline": round(d["throttle_timeline_all_hosts"]["s"]["median"], 2),
        "fleet_spark_matches_duckdb": same,
        "push_parts_per_s": round(res["push"]["parts_per_s"]),
    }


def render(prep: dict, res: dict, head: dict) -> str:
    def q(section, key):
        s = res[section][key]["s"]
        return f"{s['median']:.2f} s" + (f" ({s['min']:.2f}–{s['max']:.2f}, n={s['n']})" if s["n"] > 1 else "")

    p = res["push"]
    c, s = prep["compact"], prep["sealed"]
    lines = [
        "## Fleet: a store of 1,000 hosts x 15 minutes (issue 16)", "",
        "Reproduce: `python -m bench.bench_fleet --phase prepare`, then "
        "`flock /tmp/nodetape-kernel.lock python -m bench.bench_fleet --phase measure`. "
        "Measured under the machine-wide lock, but other work (helpers' unit tests, builds) shared the 2 cores.", "",
        "**The store is built from the real fixture tapes, re-hosted and time-shifted; no row is invented.** "
        "The four fixture recordings (one boot of one VM, 17 s of real data, "
        f"{c['rows_per_host']:,} rows) are laid into one 15-minute tape, 225 s apart, by the real TapeWriter; each of "
        "1,000 hosts is a copy (parts hard-linked) named `node-NNNN` with its wall clock moved NNNN x 7 ms, pushed "
        f"with `nodetape push`: {c['rows_per_host'] * 1000 / 1e6:.1f} million rows. Two layouts of the same rows: "
        f"**compact**, one part per table per host ({c['parts_per_host']} parts/host, what a 15-minute flush or a "
        f"compaction gives), and **as sealed**, the fixture recorder's 1 s parts ({s['parts_per_host']} parts/host, "
        f"~{s['rows_per_host'] // s['parts_per_host']} rows per part).", "",
        "| query (wall time, opening the store included) | DuckDB, compact | DuckDB, as sealed | Spark local, compact |",
        "|---|---|---|---|",
    ]
    for key, label in (("pod_births_all_hosts", "pod_births, all 1,000 hosts"),
                       ("throttle_timeline_all_hosts", "throttle_timeline, all 1,000 hosts"),
                       ("pod_births_one_host", "pod_births, `--hosts node-0042`"),
                       ("throttle_timeline_one_host", "throttle_timeline, `--hosts node-0042`")):
        lines.append(f"| {label} ({res['duckdb_compact'][key]['rows']:,} rows) | {q('duckdb_compact', key)} | "
                     f"{q('duckdb_sealed', key)} | {q('spark_compact', key)} |")
    lines += [
        "",
        "Spark's times include starting the local session (~15 s here) on the first query. "
        f"Spark gave identical rows: every named query on the fixture tapes pushed into a store "
        f"({'yes' if all(prep['spark_matches_on_fixtures'].values()) else 'NO'}), and the four fleet queries above at "
        f"1,000 hosts ({'yes' if all(res['spark_matches_duckdb_1000_hosts'].values()) else 'NO'}).", "",
        f"Push to a directory store ({p['hosts']} hosts as sealed, every part fsynced then renamed): "
        f"{p['parts']:,} parts, {p['bytes'] / 1e6:.1f} MB in {p['seconds']:.1f} s = **{p['parts_per_s']:.0f} parts/s, "
        f"{p['mb_per_s']:.2f} MB/s**; pushing the same tapes again (all already there, checksums compared) "
        f"{p['repush_parts_per_s']:.0f} parts/s.", "",
        f"What it shows: against the issue's 5 s target on this 2-core machine, fleet-wide throttle_timeline "
        f"makes it on the compact store ({res['duckdb_compact']['throttle_timeline_all_hosts']['s']['median']:.1f} s) "
        f"and pod_births does not ({res['duckdb_compact']['pod_births_all_hosts']['s']['median']:.1f} s: it scans "
        "cgroup_events, processes, namespaces and syscall_counts several times). The cost at fleet scale is files "
        "as much as rows: the same rows in 10x more parts take 4-8x longer on DuckDB (each scan opens every "
        "part, ~140 us per file here), so a store fed by 2 s flushes wants compaction (a host's parts merged per "
        "date); that is not built yet. One host's queries prune on the host partition and stay well under a second. "
        "Spark local mode on 2 cores is slower than DuckDB at this size; it is there for clusters.", "",
        "Keys: " + ", ".join(f"`{k}` = {v}" for k, v in head.items()) + " (the query keys are DuckDB on the compact "
        "store).", "",
    ]
    return "\n".join(lines)


def write_outputs(prep: dict, res: dict) -> dict:
    head = headline(prep, res)
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
