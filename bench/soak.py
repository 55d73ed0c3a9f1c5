"""Soak: a long flight-recorder run under a mixed load; is the recorder's memory flat?

    .venv/bin/python -m bench.soak                 # 30 minutes (documented, not in CI)
    .venv/bin/python -m bench.soak --minutes 3     # a short validation run

As root, records every source this node can run with `--retain 5m --max-size 200M`
while a mixed load runs: stress-ng forking/execing, opening files and burning a
little CPU, a cgroup churn (create and remove cgroups under cgroup2), and the
queries a user would run against the live tape. Every 5 s it samples the
recorder's RSS and CPU (/proc/PID), and at the end reports:

- RSS: median of the first and last quarter of the run (after a 30 s warm-up),
  their difference and a least-squares slope in KiB/minute (flat = a few KiB/min);
- CPU: the recorder's share of one core;
- drops: per source (manifest) and by the writer (back-pressure, disk full);
- retention: parts retired, the tape's size against the bound;
- live queries: how many ran and how many failed (must be 0).

Results go to stdout as markdown and to bench/work/soak.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from .common import WORK, nodetape_cmd, proc_cpu_seconds, proc_rss_bytes

UNIFIED = Path("/sys/fs/cgroup/unified")


def _slope_per_min(points: list[tuple[float, float]]) -> float:
    if len(points) < 3:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs) or 1.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den * 60.0


@contextlib.contextmanager
def _load(seconds: float, work: Path):
    procs = []
    if shutil.which("stress-ng"):
        procs.append(subprocess.Popen(
            ["stress-ng", "--exec", "1", "--open", "1", "--cpu", "1", "--cpu-load", "20",
             "--temp-path", str(work), "--timeout", f"{int(seconds) + 5}s", "--quiet"], cwd=work,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    churn_root = UNIFIED / f"nt-soak-{uuid.uuid4().hex[:6]}" if UNIFIED.is_dir() else None
    churn = None
    if churn_root is not None:
        churn_root.mkdir()
        code = (
            "import os,sys,time\n"
            f"root={str(churn_root)!r}\nend=time.time()+{seconds}\ni=0\n"
            "while time.time()<end:\n"
            "    p=os.path.join(root,f'c{i%50}')\n"
            "    try:\n"
            "        os.mkdir(p) if not os.path.exists(p) else os.rmdir(p)\n"
            "    except OSError: pass\n"
            "    i+=1; time.sleep(0.05)\n"
        )
        churn = subprocess.Popen([sys.executable, "-c", code])
        procs.append(churn)
    try:
        yield
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)
        if churn_root is not None:
            for d in churn_root.glob("c*"):
                with contextlib.suppress(OSError):
                    d.rmdir()
            with contextlib.suppress(OSError):
                churn_root.rmdir()


def run(minutes: float = 30.0, out: Path | None = None, sample_s: float = 5.0, retain: str = "5m",
        max_size: str = "200M") -> dict:
    import nodetape

    work = out or WORK / f"soak-{int(time.time())}"
    tape = work / "tape"
    work.mkdir(parents=True, exist_ok=True)
    seconds = minutes * 60
    rec = subprocess.Popen(nodetape_cmd("record", str(tape), "--retain", retain, "--max-size", max_size, "--quiet"),
                           stderr=subprocess.PIPE, text=True)
    samples: list[tuple[float, int, float]] = []
    queries = failures = 0
    errors: list[str] = []
    t0 = time.monotonic()
    try:
        while not (tape / "manifest.json").exists() and time.monotonic() - t0 < 120:
            time.sleep(0.2)
        t0 = time.monotonic()
        with _load(seconds, work):
            next_sample = next_query = t0
            while (now := time.monotonic()) - t0 < seconds:
                if rec.poll() is not None:
                    raise RuntimeError(f"recorder exited early ({rec.returncode}): {rec.stderr.read()[-500:]}")
                if now >= next_sample:
                    samples.append((now - t0, proc_rss_bytes(rec.pid), proc_cpu_seconds(rec.pid)))
                    next_sample += sample_s
                if now >= next_query:
                    try:
                        nodetape.open([tape]).sql("SELECT count(*) FROM psi_samples WHERE ts > now() - INTERVAL 1 MINUTE")
                        nodetape.open([tape]).query("throttle_timeline")
                        queries += 1
                    except Exception as e:  # noqa: BLE001 - counted and reported
                        failures += 1
                        errors.append(f"{type(e).__name__}: {str(e)[:200]}")
                    next_query += 30
                time.sleep(0.5)
    finally:
        rec.send_signal(signal.SIGTERM)
        try:
            rec.wait(timeout=60)
        except subprocess.TimeoutExpired:
            rec.kill()
    m = json.loads((tape / "manifest.json").read_text())
    warm = [s for s in samples if s[0] >= min(30.0, seconds / 4)]
    q = max(1, len(warm) // 4)
    first, last = warm[:q], warm[-q:]
    rss_first = statistics.median(s[1] for s in first)
    rss_last = statistics.median(s[1] for s in last)
    cpu = (samples[-1][2] - samples[0][2]) / max(1e-9, samples[-1][0] - samples[0][0])
    t_open = time.perf_counter()
    rows = nodetape.open([tape]).sql("SELECT count(*) AS n FROM recorder_stats").to_pylist()[0]["n"]
    open_s = time.perf_counter() - t_open
    tape_bytes = sum(f.stat().st_size for f in tape.rglob("*.parquet"))
    result = {
        "minutes": minutes,
        "retain": retain,
        "max_size": max_size,
        "samples": len(samples),
        "rss_first_quarter_mib": rss_first / 2**20,
        "rss_last_quarter_mib": rss_last / 2**20,
        "rss_growth_mib": (rss_last - rss_first) / 2**20,
        "rss_slope_kib_per_min": _slope_per_min([(s[0], s[1] / 1024) for s in warm]),
        # the shape: a plateau (caches filling once) or a line (a leak)
        "rss_mib_by_5min": [round(statistics.median(s[1] for s in samples if b * 300 <= s[0] < (b + 1) * 300) / 2**20, 1)
                            for b in range(int(samples[-1][0] // 300) + 1)
                            if any(b * 300 <= s[0] < (b + 1) * 300 for s in samples)],
        "recorder_cpu_share_of_one_core": cpu,
        "exit_code": rec.returncode,
        "sources": {n: {"status": s.get("status"), "events": s.get("events"), "dropped": s.get("dropped"),
                        "drop_reason": s.get("drop_reason"), "max_poll_ms": s.get("max_poll_ms")}
                    for n, s in m["sources"].items()},
        "writer": m.get("writer") or {},
        "retention": m.get("retention") or {},
        "tape_bytes": tape_bytes,
        "parts": sum(len(t.get("parts", [])) for t in m["tables"].values()),
        "live_queries": queries,
        "live_query_failures": failures,
        "live_query_errors": errors[:5],
        "final_open_and_count_s": open_s,
        "recorder_stats_rows": rows,
    }
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "soak.json").write_text(json.dumps(result, indent=2))
    return result


def markdown(r: dict) -> str:
    lines = [
        f"Soak: {r['minutes']:g} min flight-recorder run (--retain {r['retain']} --max-size {r['max_size']}) under stress-ng "
        f"(exec, open, cpu 20%) and cgroup churn; exit code {r['exit_code']}.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| recorder RSS, first quarter (median) | {r['rss_first_quarter_mib']:.1f} MiB |",
        f"| recorder RSS, last quarter (median) | {r['rss_last_quarter_mib']:.1f} MiB |",
        f"| RSS growth / slope | {r['rss_growth_mib']:+.1f} MiB / {r['rss_slope_kib_per_min']:+.0f} KiB per min |",
        f"| recorder RSS per 5 minutes (median) | {', '.join(f'{v:.1f}' for v in r.get('rss_mib_by_5min', []))} MiB |",
        f"| recorder CPU | {100 * r['recorder_cpu_share_of_one_core']:.1f}% of one core |",
        f"| tape on disk at the end | {r['tape_bytes'] / 2**20:.1f} MiB in {r['parts']} parts |",
        f"| parts retired by retention | {r['retention'].get('retired_parts', 0)} |",
        f"| live queries (failed) | {r['live_queries']} ({r['live_query_failures']}) |",
        f"| open + count at the end | {r['final_open_and_count_s']:.2f} s |",
    ]
    drops = {n: s for n, s in r["sources"].items() if s.get("dropped")}
    drop_text = ", ".join(f"{n} {s['dropped']} ({s['drop_reason']})" for n, s in drops.items()) or "none"
    lines.append(f"| source drops | {drop_text} |")
    wd = (r["writer"] or {}).get("dropped") or {}
    lines.append(f"| writer drops | {', '.join(f'{t} {d}' for t, d in wd.items()) or 'none'} |")
    active = [n for n, s in r["sources"].items() if s["status"] in ("active", "stopped")]
    lines.append(f"| sources recorded | {', '.join(active)} |")
    slow = max(((s.get('max_poll_ms') or 0, n) for n, s in r["sources"].items()), default=(0, "-"))
    lines.append(f"| slowest single poll | {slow[0]:.1f} ms ({slow[1]}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--out", type=Path, default=None, help="work folder (default bench/work/soak-TIME)")
    ap.add_argument("--retain", default="5m")
    ap.add_argument("--max-size", default="200M")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("soak: run as root (cgroup churn, eBPF sources)", file=sys.stderr)
        return 2
    r = run(args.minutes, args.out, retain=args.retain, max_size=args.max_size)
    print(markdown(r))
    return 0 if r["live_query_failures"] == 0 and r["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
