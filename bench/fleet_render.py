"""The BENCHMARKS.md section of the fleet benchmark (bench/bench_fleet.py), from its results."""

from __future__ import annotations

QUERIES = (("pod_births_all_hosts", "pod_births, all 1,000 hosts"),
           ("throttle_timeline_all_hosts", "throttle_timeline, all 1,000 hosts"),
           ("pod_births_one_host", "pod_births, `--hosts node-0042`"),
           ("throttle_timeline_one_host", "throttle_timeline, `--hosts node-0042`"))
COLUMNS = ("duckdb_compacted", "duckdb_compact", "duckdb_sealed", "spark_compacted")


def _q(res: dict, section: str, key: str) -> str:
    s = res[section][key]["s"]
    return f"{s['median']:.2f} s" + (f" ({s['min']:.2f}–{s['max']:.2f}, n={s['n']})" if s["n"] > 1 else "")


def _span(s: dict) -> str:
    return f"{s['median']:.1f} s" + (f" ({s['min']:.1f}–{s['max']:.1f}, n={s['n']})" if s["n"] > 1 else "")


def _intro(prep: dict, res: dict) -> list[str]:
    c, s = prep["compact"], prep["sealed"]
    n = res["hosts"]
    return [
        "## Fleet: a store of 1,000 hosts x 15 minutes (issue 16)", "",
        "Reproduce: `python -m bench.bench_fleet --phase prepare`, then "
        "`flock /tmp/nodetape-kernel.lock python -m bench.bench_fleet --phase measure`. "
        "Measured under the machine-wide lock, but other work (helpers' tests, builds) shared the 2 cores: "
        "figures are noisy, hence min–max.", "",
        "**The store is built from the real fixture tapes, re-hosted and time-shifted; no row is invented.** "
        f"The fixture recordings ({c['rows_per_host']:,} rows) are laid into one 15-minute tape, 225 s apart, by the "
        f"real TapeWriter; each of {n:,} hosts is a copy (parts hard-linked) named `node-NNNN` with its wall clock "
        f"moved NNNN x 7 ms, pushed with `nodetape push`: {c['rows_per_host'] * n / 1e6:.1f} million rows. Three "
        "layouts of the same rows: **compacted** (`nodetape compact STORE`: one file per table and date for all "
        f"hosts); **one file per host** and table ({c['parts_per_host']} parts/host, what a 15-minute flush gives; "
        "the peer, the layout before compaction existed); **as sealed**, the fixture recorder's 1 s parts "
        f"({s['parts_per_host']} parts/host).", "",
    ]


def _verdict(res: dict) -> str:
    d = res["duckdb_compacted"]
    meds = [d[k]["s"]["median"] for k in ("pod_births_all_hosts", "throttle_timeline_all_hosts")]
    return "meet" if all(m < 5 for m in meds) else "do not both meet"


def render(prep: dict, res: dict, head: dict) -> str:
    cp = res["compaction"]
    k, ks = cp["compact"], cp["sealed"]
    lines = _intro(prep, res) + [
        "| query (wall time, opening the store included) | DuckDB, compacted | DuckDB, one file per host "
        "| DuckDB, as sealed | Spark local, compacted |",
        "|---|---|---|---|---|",
    ]
    for key, label in QUERIES:
        cells = " | ".join(_q(res, col, key) for col in COLUMNS)
        lines.append(f"| {label} ({res['duckdb_compacted'][key]['rows']:,} rows) | {cells} |")
    p = res["push"]
    same_store = all(res["compacted_matches_per_host_store"].values())
    lines += [
        "",
        f"Compaction (`nodetape compact`, fsync of the new file and of its index included): the one-file-per-host "
        f"store's {k['parts']:,} parts ({k['store_parquet_bytes_before'] / 1e6:.0f} MB) into {k['files']} files "
        f"({k['bytes'] / 1e6:.1f} MB) in **{_span(k['s'])}**; the as-sealed store's {ks['parts']:,} parts "
        f"({ks['store_parquet_bytes_before'] / 1e6:.0f} MB) in {_span(ks['s'])}. Each run starts from a fresh "
        f"hard-link copy of the store. The compacted store gave the same rows as the one-file-per-host store for "
        f"the four queries ({'yes' if same_store else 'NO'}).", "",
        "Spark's times include starting the local session (~15 s here) on the first query. "
        f"Spark gave identical rows: every named query on the fixture tapes pushed into a store "
        f"({'yes' if all(prep['spark_matches_on_fixtures'].values()) else 'NO'}; tests/fleet/test_spark_engine.py "
        f"also compares every named query over a compacted store), and the four fleet queries above at 1,000 hosts "
        f"over the compacted store ({'yes' if all(res['spark_matches_duckdb_1000_hosts'].values()) else 'NO'}).", "",
        f"Push to a directory store ({p['hosts']} hosts as sealed, every part fsynced then renamed): "
        f"{p['parts']:,} parts, {p['bytes'] / 1e6:.1f} MB in {p['seconds']:.1f} s = **{p['parts_per_s']:.0f} parts/s, "
        f"{p['mb_per_s']:.2f} MB/s**; pushing the same tapes again (all already there, checksums compared) "
        f"{p['repush_parts_per_s']:.0f} parts/s.", "",
        "What it shows: the cost at fleet scale is files as much as rows. With one file per host and table, each "
        "scan opens thousands of small parts; compacted, the same rows are a few files whose row groups are sorted "
        f"by host: fleet-wide pod_births and throttle_timeline {_verdict(res)} the issue's 5 s target on this "
        "2-core machine (medians), and one host's queries skip the other hosts' row groups (`--hosts` is a filter "
        "on `_nodetape_host`). "
        "Spark local mode on 2 cores is slower than DuckDB at this size; it is there for clusters.", "",
        "Keys: " + ", ".join(f"`{k}` = {v}" for k, v in head.items()) + ". The two query keys are DuckDB over the "
        "**compacted** store (the one-file-per-host figures are the peer column above); "
        "`fleet_compact_s_1000_hosts` is the compaction of the one-file-per-host store.", "",
    ]
    return "\n".join(lines)
