"""Turn bench results into the headline keys of results.json and into BENCHMARKS.md.

Each section's renderer reads only what its module returns; a section that failed
or did not run says so instead of leaving a stale number behind.
"""

from __future__ import annotations

import json
from pathlib import Path

from .queries_report import TARGETS as QUERY_TARGETS, headline as query_headline, render as query_render

TARGETS = {
    "idle_cpu_pct": ("<=", 0.5, "every source, 1 s interval, at most 0.5% of a core"),
    "idle_anon_rss_mib": ("<=", 64, "at most 64 MiB anonymous RSS"),
    "syscall_added_cost_vs_syscount": ("<=", 0.6, "added CPU per call at most 0.6x bcc syscount's, same run"),
    "syscall_count_overhead_vs_best_peer": ("<=", 1.10, "nodetape within 10% of the best peer's slowdown"),
    "syscall_count_overhead_vs_best_peer_stress_ng": ("<=", 1.10, "the same, on stress-ng"),
    "raw_events_per_s": (">=", 1_000_000, "at least 1M raw events/s decoded and written"),
    "raw_events_vs_bare_callback": (">=", 3.0, "at least 3x the bare bcc callback"),
    "sampler_cpu_pct_5000_cgroups": ("<", 5.0, "5000 cgroups at 1 s under 5% of one core"),
    "query_s_10m_pod_births": ("<", 1.0, "10M rows under 1 s"),
    "query_s_10m_throttle_timeline": ("<", 1.0, "10M rows under 1 s"),
    "parts_per_table_15m": ("<=", 16, "at most 16 parts per table in a --retain 15m window; was ~450"),
    "tape_open_s_soak": ("<=", 0.05, "open + count at the end of a 30-minute run in 50 ms; was 0.08-0.3 s"),
    "idle_bytes_per_s": ("<=", 5000, "issue 15: idle tape growth"),
    "bytes_per_row_cgroup_samples": ("<=", 40, "issue 15: on an idle node"),
    **{k: ("<=", v, "issue 15: at 100M rows") for k, v in QUERY_TARGETS.items()},
}
# written by `python -m bench.bench_compact` (min-max over its runs; BENCHMARKS.md section 10)
COMPACT = Path(__file__).resolve().parent / "compact_results.json"


def _sec(results: dict, name: str) -> dict | None:
    s = results.get("sections", {}).get(name)
    return s["result"] if s and s.get("ok") else None


def headline(results: dict) -> dict:
    """The headline keys; their spreads (min-max over repeats) go to h["spread"][key]."""
    h: dict = {}
    spread: dict = {}
    sc = _sec(results, "syscalls")
    if sc:
        h["syscall_count_exact"] = bool(sc["nodetape"].get("exact"))
        ratio = sc.get("added_cost_vs_syscount")
        if ratio:
            h["syscall_added_cost_vs_syscount"] = round(ratio["median"], 3)
            spread["syscall_added_cost_vs_syscount"] = ratio
        for key, s in (("syscall_count_overhead_vs_best_peer", sc),
                       ("syscall_count_overhead_vs_best_peer_stress_ng", sc.get("stress_ng"))):
            peers = [s[p]["slowdown_wall"] for p in ("syscount", "bpftrace") if s and "slowdown_wall" in s.get(p, {})]
            if peers and "slowdown_wall" in s["nodetape"]:
                h[key] = round(s["nodetape"]["slowdown_wall"] / min(peers), 3)
    rb = _sec(results, "ringbuf")
    if rb:
        # the consumer's capacity: a full ring drained, decoded to Arrow and written to Parquet,
        # against the bare callback draining the same ring in the same run
        h["raw_events_per_s"] = round(rb["drain"]["batch_arrow_parquet"]["events_per_s"])
        h["raw_events_vs_bare_callback"] = round(rb["drain"]["ratio"], 2)
    sa = _sec(results, "sampler")
    five = (sa or {}).get(5000) or (sa or {}).get("5000")  # int keys in memory, str in JSON
    if five:
        h["sampler_cpu_pct_5000_cgroups"] = five["core_pct_at_1s"]
    rec = _sec(results, "recording")
    if rec:
        sp = rec.get("idle_runs")
        if sp:  # medians over the idle runs (min-max in the section)
            h["idle_cpu_pct"] = round(sp["cpu_pct"]["median"], 2)
            h["idle_anon_rss_mib"] = round(sp["anon_mib"]["median"], 1)
            h["idle_file_rss_mib"] = round(sp["file_mib"]["median"], 1)
            h["idle_bytes_per_s"] = round(sp["bytes_per_s"]["median"])
            if sp.get("bytes_per_row_cgroup_samples"):
                h["bytes_per_row_cgroup_samples"] = round(sp["bytes_per_row_cgroup_samples"]["median"], 1)
        else:
            h["idle_cpu_pct"] = round(rec["idle"]["cpu_pct"], 2)
            h["idle_bytes_per_s"] = round(rec["idle"]["bytes_per_s"])
        h["idle_rss_bytes"] = rec["idle"]["rss_max_bytes"]
        h["busy_bytes_per_s"] = round(rec["busy"]["bytes_per_s"])
    q = _sec(results, "queries")
    if q:  # section 5's keys and spreads (bench/queries_report.py)
        for d, x in zip((h, spread), query_headline(q)):
            d.update(x)
    rp = _sec(results, "replay")
    if rp:
        h["replay_jsonl_events_per_s"] = rp["jsonl"]["events_per_s"]
        h["replay_tape_events_per_s"] = rp["tape"]["events_per_s"]
    if COMPACT.exists():
        c = json.loads(COMPACT.read_text())
        h.update({k: c[k] for k in ("parts_per_table_15m", "tape_open_s_soak") if k in c})
    h["spread"] = spread
    return h


def _verdict(key: str, value) -> str:
    if key not in TARGETS or value is None:
        return ""
    op, limit, what = TARGETS[key]
    if isinstance(value, dict):  # min-max over runs: the worst run decides
        value = value["max"] if op.startswith("<") else value["min"]
    ok = {"<=": value <= limit, ">=": value >= limit, "<": value < limit}[op]
    return f"{'met' if ok else 'MISSED'} ({what})"


def _range(d: dict | None) -> str:
    return f"{d['min']:.3g}–{d['max']:.3g} ({d['n']})" if d else ""


def _ms(d: dict, scale: float = 1e3) -> str:
    return f"{d['median'] * scale:.1f} ({d['min'] * scale:.1f}–{d['max'] * scale:.1f})"


def _table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out + [""]


_SYSCALL_TOOLS = (("alone", "workload alone"), ("nodetape", "nodetape `syscalls`"),
                  ("syscount", "bcc `syscount` (bpfcc-tools)"), ("bpftrace", "bpftrace count per (cgroup, nr)"))


def _ns(d: dict | None) -> str:
    return f"{d['median']:.0f} ({d['min']:.0f}–{d['max']:.0f})" if d else ""


def _syscall_rows(sc: dict, exact: bool) -> list[list]:
    rows = []
    for k, label in _SYSCALL_TOOLS:
        if k not in sc:
            continue
        e = sc[k]
        if "wall_s" not in e:
            rows.append([label, *[""] * (7 if exact else 4), "all failed: " + "; ".join(e.get("failures", []))])
            continue
        rec = "" if k == "alone" or "recorder_cpu_s" not in e else _ms(e["recorder_cpu_s"])
        row = [label, _ms(e["wall_s"]), f"{e['slowdown_wall']:.2f}x", f"{e['slowdown_cpu']:.2f}x", rec]
        if exact:
            row[1:1] = [_ns(e.get("cpu_ns_per_call")), _ns(e.get("added_cpu_ns_per_call"))]
            row.append("" if k == "alone" else ("exact" if e.get("exact") else "NOT exact") + f" {e.get('counts')}")
        row.append(f"{len(e['failures'])} failed: " + "; ".join(e["failures"]) if e.get("failures") else "")
        rows.append(row)
    return rows


def _syscalls(sc: dict) -> list[str]:
    ratio = sc.get("added_cost_vs_syscount")
    env = sc.get("nodetape", {}).get("environment", {})
    out = [f"{sc['n']:,} getppid calls from a compiled loop in its own cgroup, {sc['repeats']} repeats; every "
           "figure is the median (min–max). Each counter's run is paired with a run of the workload alone made "
           "just before it (tools in a rotated order); *added ns/call* is the workload's CPU time (user + sys, "
           "where the BPF program runs) minus its paired run alone, over the calls. nodetape ran its `syscalls` "
           f"source attached as `{env.get('attach')}` with {env.get('cgroup_slots')} cgroup slots, the cgroup "
           "already owning its slot (as after its first interval). *Recorder CPU* is the counter's own user-space "
           "CPU while the workload ran; syscount and bpftrace read their maps only when they exit.", "",
           *_table(["run", "CPU ns/call", "added ns/call (CPU)", "wall ms", "slowdown (wall)", "slowdown (CPU)",
                    "recorder CPU ms", "count", "failures"], _syscall_rows(sc, True))]
    if ratio:
        out += [f"nodetape's added cost over syscount's, per pair of runs: **{ratio['median']:.2f}x** "
                f"({ratio['min']:.2f}–{ratio['max']:.2f}, {ratio['n']} repeats); target <= 0.6x.", ""]
    out += _program_time(sc.get("program_time"))
    if "stress_ng" in sc:
        out += [f"`stress-ng --get 1 --get-ops {sc['stress_ops']:,}` (getpid, getppid, getuid, getrlimit, ... "
                "from stress-ng's worker) in the same cgroup, same counters, same repeats:", "",
                *_table(["run", "wall ms", "slowdown (wall)", "slowdown (CPU)", "recorder CPU ms", "failures"],
                        _syscall_rows(sc["stress_ng"], False))]
    return out + _design(sc.get("design"))


def _program_time(pt: dict | None) -> list[str]:
    if not pt:
        return []
    if "failed" in pt:
        return [f"In-program time: **failed:** {pt['failed']}", ""]
    cells = []
    for k, label in (("nodetape", "nodetape's `syscalls` program"), ("syscount", "syscount's program")):
        e = pt.get(k, {})
        cells.append(f"{label} {_ns(e.get('ns_per_run'))} ns per run" if e.get("ns_per_run")
                     else f"{label}: failed ({'; '.join(e.get('failures', []))})")
    return ["**In-program time** (the kernel's BPF run-time stats, BPF_ENABLE_STATS, in a separate pass; "
            "immune to other work's effect on the workload's CPU time, but without the hook's own cost, "
            "which the design table gives: an empty raw tracepoint against an empty classic one): "
            + "; ".join(cells) + ".", ""]


def _design(d: dict | None) -> list[str]:
    from .bench_syscall_design import render

    return render(d, _table, _ns)


def _ringbuf(rb: dict) -> list[str]:
    d = rb["drain"]
    b, c = rb["batch"], rb["callback"]
    return [
        "Same BPF program and ring buffer for both consumers, measured one after the other in this run.", "",
        "**Consumer capacity** (a full ring drained, no producer running):", "",
        *_table(["consumer", "events", "events/s", "events per CPU-second"], [
            ["nodetape batch consumer (mmap, numpy, Arrow, Parquet zstd)", f"{d['batch_arrow_parquet']['events']:,}",
             f"{d['batch_arrow_parquet']['events_per_s']:,.0f}", f"{d['batch_arrow_parquet']['events_per_cpu_s']:,.0f}"],
            ["bare bcc ring_buffer callback (counts only)", f"{d['callback_count_only']['events']:,}",
             f"{d['callback_count_only']['events_per_s']:,.0f}", f"{d['callback_count_only']['events_per_cpu_s']:,.0f}"],
        ]),
        f"Ratio: **{d['ratio']:.2f}x** the bare callback.", "",
        f"**Live flood** (a getppid loop producing events for {b['seconds']:.1f} s, ring {rb['ring_bytes'] >> 20} MiB):", "",
        *_table(["consumer", "events/s taken", "produced/s", "dropped"], [
            ["nodetape batch consumer", f"{b['events_per_s']:,.0f}", f"{b['produced_per_s']:,.0f}", f"{b['dropped']:,}"],
            ["bare bcc callback", f"{c['events_per_s']:,.0f}",
             f"{c['produced_per_s']:,.0f}" if "produced_per_s" in c else "", f"{c.get('dropped_total', 0):,}"],
        ]),
        "Under the live flood both consumers are bounded by what one producer thread can emit on the other "
        "core.", "",
        *_sweep(rb),
    ]


def _sweep(rb: dict) -> list[str]:
    sw = rb.get("sweep")
    if not sw:
        return []

    def onset(k):
        hit = [r for r in sw if r[k]["dropped"]]
        if not hit:
            return "no drops up to the fastest producer"
        r = hit[0]
        return f"drops begin at {r[k]['produced_per_s']:,.0f} events/s produced"

    rows = [[("unpaced" if not r["target_per_s"] else f"{r['target_per_s']:,}"),
             f"{r['batch']['produced_per_s']:,.0f}", f"{r['batch']['dropped']:,}",
             f"{r['callback']['produced_per_s']:,.0f}", f"{r['callback']['dropped']:,}"] for r in sw]
    return [f"**Where drops begin** (the producer paced at each rate, a {rb['sweep_ring_bytes'] >> 20} MiB ring, "
            "the peers' way of finding a consumer's limit):", "",
            *_table(["producer target/s", "batch: produced/s", "batch: dropped", "callback: produced/s",
                     "callback: dropped"], rows),
            f"nodetape's batch consumer: {onset('batch')}; the bare callback: {onset('callback')}.", ""]


def _sampler(sa: dict) -> list[str]:
    rows = [[f"{int(k):,}", v["rows_per_sample"], f"{v['cpu_ms_per_sample']:.1f}",
             _ms(v["cpu_ms_per_sample_spread"], 1) if "cpu_ms_per_sample_spread" in v else "",
             f"{v['core_pct_at_1s']:.2f}%", f"{v['first_sample_cpu_ms']:.0f}", f"{v['rss_mb']:.0f}"]
            for k, v in sorted(sa.items(), key=lambda kv: int(kv[0]))]
    return ["Real empty v1 cgroups in the cpu, cpuacct, memory and pids hierarchies; the `samples` source "
            "reading them every interval. The ceiling: one `pread` per file costs about 2.7 µs here, so the "
            "three reads an idle v1 cgroup needs cost 8 µs before any Python runs.", "",
            *_table(["cgroups", "rows/sample", "CPU ms/sample (mean)", "per sample: median (min–max) ms",
                     "core % at 1 s", "first sample ms", "RSS MiB (bench process)"], rows)]


def _pct(d: dict | None) -> str:
    return f"{d['median']:.2f} ({d['min']:.2f}–{d['max']:.2f}, {d['n']})" if d else ""


def _anon_file(r: dict) -> str:
    if not r.get("rss_anon_bytes"):
        return ""
    return f"{r['rss_anon_bytes'] / 2**20:.0f} / {r['rss_file_bytes'] / 2**20:.0f}"


def _recording(rec: dict) -> list[str]:
    i, b = rec["idle"], rec["busy"]
    out = ["`nodetape record` with every source this node can run, as a separate process; CPU from "
           "/proc/PID/stat after start-up (in-kernel BPF time is not process time: see section 1).", "",
           *_table(["node", "seconds", "recorder CPU % of a core", "RSS max MiB", "bytes on disk", "bytes/s"], [
               ["idle", f"{i['seconds']:.0f}", f"{i['cpu_pct']:.2f}", f"{i['rss_max_bytes'] / 2**20:.0f}",
                f"{i['bytes']:,}", f"{i['bytes_per_s']:,.0f}"],
               ["busy (stress-ng fork, open, get)", f"{b['seconds']:.0f}", f"{b['cpu_pct']:.2f}",
                f"{b['rss_max_bytes'] / 2**20:.0f}", f"{b['bytes']:,}", f"{b['bytes_per_s']:,.0f}"],
           ]),
           *_idle_runs(rec.get("idle_runs")),
           "Bytes per row by table (Parquet, zstd; small parts carry fixed footer costs):", ""]
    names = sorted(set(i["tables"]) | set(b["tables"]))
    rows = []
    for n in names:
        a, c = i["tables"].get(n), b["tables"].get(n)
        rows.append([n, a["rows"] if a else "", f"{a['bytes_per_row']:.1f}" if a else "",
                     c["rows"] if c else "", f"{c['bytes_per_row']:.1f}" if c else ""])
    out += _table(["table", "idle rows", "idle bytes/row", "busy rows", "busy bytes/row"], rows)
    if i.get("sources_unavailable"):
        out += ["Sources that did not run: " + "; ".join(f"`{k}`: {v}" for k, v in i["sources_unavailable"].items()), ""]
    return out


def _idle_runs(sp: dict | None) -> list[str]:
    """Issue 15's idle figures: median (min-max) over the idle runs, beside their targets."""
    if not sp:
        return []

    def f(d, fmt):
        return f"{fmt.format(d['median'])} ({fmt.format(d['min'])}–{fmt.format(d['max'])}, n={d['n']})"

    rows = [["idle CPU, % of a core", f(sp["cpu_pct"], "{:.2f}"), "<= 0.5"],
            ["anonymous RSS, MiB", f(sp["anon_mib"], "{:.0f}"), "<= 64"],
            ["file-backed RSS, MiB (libLLVM, libclang, pyarrow code)", f(sp["file_mib"], "{:.0f}"), ""],
            ["idle tape growth, bytes/s", f(sp["bytes_per_s"], "{:,.0f}"), "<= 5,000"]]
    if sp.get("bytes_per_row_cgroup_samples"):
        rows.append(["bytes per cgroup_samples row", f(sp["bytes_per_row_cgroup_samples"], "{:.0f}"), "<= 40"])
    return ["Idle, every source, 1 s interval, default `--flush 2s` (issue 15's targets):", "",
            *_table(["figure", "median (min–max)", "target"], rows)]


def _replay(rp: dict) -> list[str]:
    p = rp["pacing"]
    return [f"A generated tape of {rp['rows']:,} rows; each mode in its own process.", "",
            *_table(["mode", "events/s", "seconds", "peak RSS MiB"], [
                [m, f"{rp[m]['events_per_s']:,}", rp[m]["seconds"], rp[m]["peak_rss_mb"]]
                for m in ("events", "jsonl", "tape")]),
            f"Re-enactment pace at `--speed 1`: {p['events']} events {p['recorded_gap_ms']:.0f} ms apart; "
            f"absolute error median {p['abs_error_ms']['median']:.2f} ms "
            f"(min {p['abs_error_ms']['min']:.2f}, max {p['abs_error_ms']['max']:.2f}), p99 {p['p99_error_ms']:.2f} ms.", ""]


def _storm(st: dict) -> list[str]:
    tick = st["tick_ms"]
    rows = [[f"`{name}`", f"{ms:.1f}", f"{ms / tick:.1f}x"] for name, ms in sorted(st["max_poll_ms"].items())]
    out = [f"A separate process made and removed {st['cgroups_made']:,} cgroups in {st['hierarchies']} hierarchies "
           f"(cgroup2 and v1) in {st['storm_s']:.1f} s ({st['mkdir_rmdir_per_s']:,} mkdir + rmdir per second), while "
           "`cgroup`, `samples` and `psi` recorded. Each source's longest single poll, beside the loop's tick "
           f"({tick:.0f} ms; the tree's drain budget is {st['drain_budget_ms']:.0f} ms per drain):", ""]
    out += _table(["source", "longest poll (ms)", "vs the tick"], rows)
    out += [f"Distinct cgroups in the tape: {st['distinct_cgroups_recorded']:,} of {st['distinct_cgroups_expected']:,}"
            + (f"; dropped (counted): {st['dropped']}" if st["dropped"] else "; nothing dropped") + ". "
            "`samples` and `psi` set up new cgroups (open, first read of their files) at most "
            f"{st.get('max_new_per_sample', 256)} per sample after the first, the rest at the next ones: their longest "
            "poll is that setup (0.8–0.9 s in one poll before this bound).", ""]
    return out


RENDER = {"syscalls": _syscalls, "ringbuf": _ringbuf, "sampler": _sampler, "recording": _recording,
          "queries": query_render, "replay": _replay, "storm": _storm}


def _value(v):
    return f"{v['min']:g}–{v['max']:g} (n={v['n']})" if isinstance(v, dict) and "min" in v else v


def render(results: dict, command: str) -> str:
    from .__main__ import SECTIONS

    m = results["machine"]
    out = ["# Benchmarks", "",
           f"Measured on {m['date']}: {m['cores']} cores ({m.get('cpu') or 'unknown CPU'}), kernel {m['kernel']}, "
           f"Python {m['python']}.", "",
           f"Reproduce with `{command}` (writes this file and `bench/results.json`)."
           + (" This was a **quick** run: small sizes, short runs." if results.get("quick") else ""), "",
           "## Headline", ""]
    keys = [k for k in results if k not in ("machine", "quick", "sections", "spread")]
    spread = results.get("spread", {})
    out += _table(["figure", "value", "min–max (runs)", "target"],
                  [[f"`{k}`", _value(results[k]), _range(spread.get(k)), _verdict(k, results[k])] for k in keys])
    for name, (_, title) in SECTIONS.items():
        s = results["sections"].get(name)
        out += [f"## {title}", ""]
        if s is None:
            out += ["Not run in this invocation.", ""]
        elif not s["ok"]:
            out += [f"**Failed:** {s['error']}", ""]
        else:
            if "loadavg_1m" in s:
                la = s["loadavg_1m"]
                busy = max(la) > 0.5
                out += [f"*Measured {s['measured']}; 1-minute load average {la[0]} before and {la[1]} after this "
                        f"section on {m['cores']} cores*"
                        + (": other work was running on the machine during it (shared by several sessions), so "
                           "timings carry that noise; spreads are given for this reason." if busy else "."), ""]
            out += RENDER[name](s["result"])
    soak = Path(__file__).resolve().parent / "soak_results.md"
    if soak.exists():
        out += ["## 9. Soak: a long flight-recorder run under mixed load", "", soak.read_text().strip(), ""]
    compact = Path(__file__).resolve().parent / "compact_results.md"
    if compact.exists():
        out += ["## 10. Compaction: parts per table and opening the tape", "", compact.read_text().strip(), ""]
    out += ["## Raw results", "", "Every number above, and more, is in `bench/results.json`.", ""]
    return "\n".join(out)


def main_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)
