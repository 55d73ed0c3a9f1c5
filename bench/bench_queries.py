"""5. Query speed: pod_births and throttle_timeline on synthetic tapes of 1M, 10M, 100M rows.

SYNTHETIC DATA, for timing only: the tapes are generated here (numpy), shaped
like the real recordings in fixtures/tapes/ (a hybrid node; container slots
whose containers live 60 s then are replaced; per container and second one
cgroup_samples row, one PSI row and 20 syscall_counts rows; per birth the
created/attach/populated/removed rows in 10 hierarchies, fork/exec/exit/seen
process rows and 10 namespace rows). Their numbers are not kernel data and
never leave bench/work/ (generated once per size and generator version under
bench/work/query-tapes/, reused by later runs).

Each run of a query is a fresh Python process (open the tape, run the query to
Arrow) holding the shared benchmark lock; its peak RSS is VmHWM. Beside each
query, in the same run and alternated with it, its ceiling: a fresh process
scanning the same columns of the same tables (min() of each column). Figures
are medians with min-max over 3 runs. The scaling exponent is the slope of
log(seconds) over log(rows).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import uuid

import numpy as np
import pyarrow as pa

from .common import REPO, WORK, median_spread

HIERARCHIES = ["blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "memory", "pids", "systemd", "unified"]
SLOTS = 200
LIFETIME_S = 60
SYSCALLS_PER_S = 20
S = 1_000_000_000
QUERIES = ("pod_births", "throttle_timeline")


def _dict(indices: np.ndarray, values: list[str]) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(indices.astype(np.int32)), pa.array(values, pa.string()))


def generate(out, rows: int, seed: int = 1) -> dict:
    """Write a synthetic tape of about `rows` rows at `out`; returns {table: rows}."""
    from nodetape.tape.format import new_manifest
    from nodetape.schemas import SCHEMA_VERSION, batch
    from nodetape.tape.writer import TapeWriter

    rng = np.random.default_rng(seed)
    per_slot_s = 1 + 1 + SYSCALLS_PER_S + 40 / LIFETIME_S  # samples + psi + syscalls + birth rows
    seconds = max(LIFETIME_S, int(rows / (SLOTS * per_slot_s)))
    gens = math.ceil(seconds / LIFETIME_S)
    n_cont = SLOTS * gens
    pods = [str(uuid.UUID(int=int(rng.integers(1 << 62)) << 64 | i)) for i in range(n_cont)]
    cids = [f"{i:064x}" for i in range(n_cont)]
    cpaths = [f"/kubepods/burstable/pod{p}/{c}" for p, c in zip(pods, cids)]
    ppaths = [f"/kubepods/burstable/pod{p}" for p in pods]
    unified_id = np.arange(n_cont, dtype=np.uint64) + 100_000
    manifest = new_manifest(host={"hostname": "synthetic"}, clock_pair=(0, 1_704_067_200 * S), cgroup={"mode": "hybrid"},
                            options={"synthetic": "bench/bench_queries.py timing data, not a recording"},
                            schema_version=SCHEMA_VERSION)
    # offline: a bench tape must hold every generated row (a recording's writer drops raw rows it cannot
    # flush fast enough, counted; that made earlier generations' syscall_counts depend on timing)
    w = TapeWriter(out, manifest, max_buffer_bytes=64 << 20, offline=True)
    counts: dict[str, int] = {}

    def put(table, cols):
        b = batch(table, cols)
        w.append(table, b)
        counts[table] = counts.get(table, 0) + b.num_rows

    # births and deaths: per container, rows in every hierarchy
    k = np.arange(n_cont)
    birth = (k // SLOTS) * LIFETIME_S * S + (k % SLOTS) * (LIFETIME_S * S // SLOTS) + S
    death = birth + (LIFETIME_S - 1) * S
    nh = len(HIERARCHIES)
    h_idx = np.tile(np.arange(nh), n_cont)
    kk = np.repeat(k, nh)
    jitter = rng.integers(0, 2_000_000, kk.size)
    for kind, ts, paths in (("created", np.repeat(birth - 5 * S // 1000, nh) + jitter, ppaths),
                            ("created", np.repeat(birth, nh) + jitter, cpaths),
                            ("removed", np.repeat(death, nh) + jitter, cpaths)):
        is_c = paths is cpaths
        put("cgroup_events", {
            "ts_ns": ts, "source": _dict(np.zeros(kk.size), ["ebpf"]), "kind": _dict(np.zeros(kk.size), [kind]),
            "hierarchy": _dict(h_idx, HIERARCHIES), "cgroup_path": _dict(kk, paths),
            "cgroup_id": np.where(h_idx == nh - 1, unified_id[kk] + np.uint64(0 if is_c else 10_000_000),
                                  kk.astype(np.uint64) * 16 + h_idx.astype(np.uint64)),
            "pod_uid": _dict(kk, pods), "container_id": _dict(kk, cids) if is_c else None,
            "qos_class": _dict(np.zeros(kk.size), ["burstable"]),
        })
    put("cgroup_events", {
        "ts_ns": np.concatenate([birth + 10 * 1_000_000, birth + 20 * 1_000_000]),
        "source": _dict(np.r_[np.zeros(n_cont), np.ones(n_cont)], ["ebpf", "inotify"]),
        "kind": _dict(np.r_[np.zeros(n_cont), np.ones(n_cont)], ["attach", "populated"]),
        "hierarchy": _dict(np.zeros(2 * n_cont), ["unified"]), "cgroup_path": _dict(np.r_[k, k], cpaths),
        "cgroup_id": np.r_[unified_id, unified_id], "pid": np.r_[k + 10_000, np.zeros(n_cont)].astype(np.int32),
        "pod_uid": _dict(np.r_[k, k], pods), "container_id": _dict(np.r_[k, k], cids),
    })
    pid = (k + 10_000).astype(np.int32)
    put("processes", {
        "ts_ns": np.r_[birth + 5_000_000, birth + 30_000_000, birth + 400_000_000, death - 1_000_000],
        "source": _dict(np.r_[np.zeros(2 * n_cont), np.ones(n_cont), np.zeros(n_cont)], ["ebpf", "proc"]),
        "event": _dict(np.repeat([0, 1, 2, 3], n_cont), ["fork", "exec", "seen", "exit"]),
        "pid": np.r_[pid, pid, pid, pid], "tgid": np.r_[pid, pid, pid, pid],
        "ppid": np.r_[np.full(n_cont, 9_999), np.full(3 * n_cont, 9_999)].astype(np.int32),
        "comm": _dict(np.r_[np.zeros(n_cont), np.ones(3 * n_cont)], ["runc:[2:INIT]", "app"]),
        "filename": np.array(["/app"] * (4 * n_cont), dtype=object),
        "cgroup_id": np.r_[unified_id, unified_id, unified_id, unified_id],
        "cgroup_path": _dict(np.r_[k, k, k, k], cpaths),
    })
    ns_types = ["cgroup", "ipc", "mnt", "net", "pid", "pid_for_children", "time", "time_for_children", "user", "uts"]
    put("namespaces", {
        "ts_ns": np.r_[np.zeros(10, np.int64), np.repeat(birth + 400_000_000, 10)],
        "pid": np.r_[np.ones(10), np.repeat(pid, 10)].astype(np.int32),
        "ns_type": _dict(np.tile(np.arange(10), n_cont + 1), ns_types),
        "ns_inode": np.r_[np.arange(10), np.repeat(k, 10) * 10 + np.tile(np.arange(10), n_cont) + 1000].astype(np.uint64),
    })
    # per second: samples, psi and syscall counts of the live container in every slot
    slot = np.arange(SLOTS)
    for t0 in range(0, seconds, 50):
        t = np.arange(t0, min(seconds, t0 + 50))
        tt, ss = np.repeat(t, SLOTS), np.tile(slot, t.size)
        gen = (tt - (ss * (LIFETIME_S * S // SLOTS) + S) // S) // LIFETIME_S
        cont = np.clip(gen, 0, None) * SLOTS + ss
        ok = (gen >= 0) & (cont < n_cont)
        cont = np.where(ok, cont, 0)
        age = tt - (birth[cont] // S)
        alive = ok & (age >= 1)
        tt, cont, age = tt[alive], cont[alive], age[alive]
        ts = tt * S + 500_000_000
        n = tt.size
        busy = (cont % 7 == 0)  # one container in seven runs into its quota
        put("cgroup_samples", {
            "ts_ns": ts, "hierarchy": _dict(np.zeros(n), ["cpu"]), "cgroup_path": _dict(cont, cpaths),
            "cgroup_id": cont.astype(np.uint64) * 16 + 1, "cpu_usage_usec": age * np.where(busy, 150_000, 20_000),
            "nr_periods": age * 10, "nr_throttled": age * np.where(busy, 9, 0),
            "throttled_usec": age * np.where(busy, 800_000, 0), "cpu_quota_usec": np.full(n, 15_000),
            "cpu_period_usec": np.full(n, 100_000), "memory_current": rng.integers(1 << 20, 1 << 28, n),
            "nr_procs": np.ones(n, np.int64), "pod_uid": _dict(cont, pods), "container_id": _dict(cont, cids),
        })
        put("psi_samples", {
            "ts_ns": ts, "scope": _dict(cont, cpaths), "resource": _dict(np.zeros(n), ["cpu"]),
            "some_avg10": np.where(busy, 60.0, 1.0), "some_total_usec": age * np.where(busy, 600_000, 10_000),
        })
        m = n * SYSCALLS_PER_S
        put("syscall_counts", {
            "interval_start_ns": np.repeat(tt * S, SYSCALLS_PER_S), "interval_end_ns": np.repeat((tt + 1) * S, SYSCALLS_PER_S),
            "cgroup_id": np.repeat(unified_id[cont], SYSCALLS_PER_S), "syscall_nr": np.tile(np.arange(SYSCALLS_PER_S), n).astype(np.int32),
            "syscall_name": _dict(np.tile(np.arange(SYSCALLS_PER_S), n), [f"sys{i}" for i in range(SYSCALLS_PER_S)]),
            "count": rng.integers(1, 1000, m),
        })
    w.close(end_ns=seconds * S)
    if w.dropped_rows:
        raise RuntimeError(f"{out}: the writer dropped {w.dropped_rows} generated rows")
    return counts


# the columns each query reads, per table: its ceiling is a scan of them (min() of every column)
READS = {
    "pod_births": {
        "cgroup_events": "host, ts_ns, ts, seq, source, kind, hierarchy, cgroup_path, cgroup_id, pid, comm, pod_uid, container_id",
        "cgroup_samples": "host, cgroup_path, pod_uid, container_id",
        "processes": "host, ts_ns, ts, seq, source, event, pid, tgid, comm, filename, cgroup_id, cgroup_path",
        "namespaces": "host, ts_ns, ts, pid, ns_type, ns_inode",
        "syscall_counts": "host, cgroup_id, interval_start_ns, interval_end_ns, count, syscall_nr, syscall_name",
    },
    "throttle_timeline": {
        "cgroup_samples": "host, hierarchy, cgroup_path, cgroup_id, ts_ns, ts, pod_uid, container_id, cpu_usage_usec, "
                          "nr_periods, nr_throttled, throttled_usec, cpu_quota_usec, cpu_period_usec",
        "psi_samples": "host, scope, resource, ts, some_avg10",
    },
}
GEN_VERSION = 3  # bump when generate() or the part encoding changes: cached tapes of another version are made again
# (3: parts keep only the dictionary values they use, nodetape/tape/partfile.py tight_dictionaries)
LOCK = "/tmp/nodetape-kernel.lock"  # shared with the other benchmarks and kernel tests

# one timed run in a fresh process: open the tape, run the named query (or the ceiling's scans) to
# Arrow; the process's peak RSS is VmHWM from /proc/self/status
_TIMER = r"""
import json, sys, time
import nodetape
tape, name, scans = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
t = time.perf_counter()
tapes = nodetape.open(tape)
if scans:
    rows = sum(len(tapes.sql(f"SELECT {', '.join(f'min({c.strip()})' for c in cols.split(','))} FROM {tab}"))
               for tab, cols in scans.items())
else:
    rows = tapes.query(name).num_rows
s = time.perf_counter() - t
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
print("\n" + json.dumps({"seconds": s, "rows": rows, "peak_rss_mib": int(hwm) / 1024}))
"""


def _one_run(tape, name: str, scans: dict | None) -> dict:
    import fcntl

    with open(LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # held for one run only: other helpers' benchmarks interleave
        r = subprocess.run([sys.executable, "-c", _TIMER, str(tape), name, json.dumps(scans or {})],
                           capture_output=True, text=True, timeout=1800, cwd=REPO)
    if r.returncode:
        raise RuntimeError(f"{name} on {tape}: {(r.stderr.strip().splitlines() or ['no output'])[-1]}")
    return json.loads(r.stdout.strip().splitlines()[-1])  # the last line: libraries may print before it


def time_query(tape, name: str, reps: int = 3) -> dict:
    """`reps` runs of the query and of its ceiling, alternated, each in a fresh process."""
    runs, ceil = [], []
    for _ in range(reps):
        runs.append(_one_run(tape, name, None))
        ceil.append(_one_run(tape, name, READS[name]))
    return {"seconds": median_spread([r["seconds"] for r in runs]), "result_rows": runs[-1]["rows"],
            "peak_rss_mb": round(max(r["peak_rss_mib"] for r in runs), 1),
            "peak_rss_mib": median_spread([round(r["peak_rss_mib"], 1) for r in runs]),
            "ceiling_seconds": median_spread([r["seconds"] for r in ceil]),
            "ceiling_peak_rss_mib": round(max(r["peak_rss_mib"] for r in ceil), 1)}


def cached_tape(size: int):
    """The synthetic tape of `size` rows, generated once under bench/work/query-tapes/ and reused."""
    tape = WORK / "query-tapes" / f"rows-{size}-g{GEN_VERSION}"
    done = tape / "generated.json"
    if done.exists():
        return tape, json.loads(done.read_text())
    shutil.rmtree(tape, ignore_errors=True)
    tape.parent.mkdir(parents=True, exist_ok=True)
    for old in tape.parent.glob(f"rows-{size}-g*"):
        shutil.rmtree(old, ignore_errors=True)  # another generator version's
    counts = generate(tape, size)
    done.write_text(json.dumps(counts))
    return tape, counts


def _exponent(points: list[tuple[int, float]]) -> float | None:
    if len(points) < 2:
        return None
    x = np.log([p[0] for p in points])
    y = np.log([p[1] for p in points])
    return round(float(np.polyfit(x, y, 1)[0]), 2)


def run(sizes=(1_000_000, 10_000_000, 100_000_000), quick: bool = False, reps: int = 3) -> dict:
    if quick:
        sizes = tuple(s for s in sizes if s <= 1_000_000) or (100_000,)
        sizes = (100_000, *sizes) if 100_000 not in sizes else sizes
    out: dict = {"synthetic": True, "sizes": {}, "queries": {}}
    for size in sizes:
        tape, counts = cached_tape(size)
        disk = sum(f.stat().st_size for f in tape.rglob("*.parquet"))
        entry = {"rows": sum(counts.values()), "tables": counts, "parquet_mb": round(disk / 1e6, 1)}
        for q in QUERIES:
            entry[q] = time_query(tape, q, reps)
        out["sizes"][str(size)] = entry
    for q in QUERIES:
        pts = [(e["rows"], e[q]["seconds"]["median"]) for e in out["sizes"].values()]
        out["queries"][q] = {"scaling_exponent": _exponent(pts),
                             "seconds_by_rows": {str(r): round(s, 3) for r, s in pts}}
    ten = out["sizes"].get("10000000")
    if ten:
        out["target_10M_under_1s"] = {q: ten[q]["seconds"]["median"] < 1.0 for q in QUERIES}
    return out


if __name__ == "__main__":
    # standalone: `python -m bench.bench_queries [SIZE...]` writes section 5 and its headline keys
    from .queries_report import headline, write

    sizes = tuple(int(a) for a in sys.argv[1:]) or (1_000_000, 10_000_000, 100_000_000)
    res = run(sizes)
    write(res, headline(res))
    print(json.dumps(res, indent=2))
