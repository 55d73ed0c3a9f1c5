"""Figures of the syscall-counting benchmark from its runs (one list per tool, aligned by repeat).

Added cost per call is paired (a tool's run minus the run alone made just
before it), so load from other work on the machine shifts both alike.
Every figure is a median with its min-max over the repeats that succeeded; a
tool's failed runs are listed with their reasons.
"""

from __future__ import annotations

from .common import median_spread


def _spread(values: list[float]) -> dict | None:
    return median_spread(values) if values else None


def _added(rs: list[dict], field: str, n: int) -> list[float]:
    return [(r[field] - r["base_" + field]) / n * 1e9 for r in rs if "failed" not in r and "base_" + field in r]


def _exact(k: str, counts: list, n: int) -> bool:
    if not counts:
        return False
    # syscount counts node-wide: others' getppid calls could only add
    return all(c == n for c in counts) if k != "syscount" else all(c is not None and c >= n for c in counts)


def summary(runs: dict[str, list[dict]], n: int | None) -> dict:
    ok = {k: [r for r in rs if "failed" not in r] for k, rs in runs.items()}
    if not ok["alone"]:
        raise RuntimeError("every run of the workload alone failed: " + runs["alone"][0]["failed"])
    base_wall = median_spread([r["wall_s"] for r in ok["alone"]])["median"]
    base_cpu = median_spread([r["cpu_s"] for r in ok["alone"]])["median"]
    out: dict = {}
    for k, rs in runs.items():
        entry: dict = {"runs_ok": len(ok[k]), "failures": [r["failed"] for r in rs if "failed" in r]}
        if ok[k]:
            wall = median_spread([r["wall_s"] for r in ok[k]])
            cpu = median_spread([r["cpu_s"] for r in ok[k]])
            entry.update({"wall_s": wall, "cpu_s": cpu, "slowdown_wall": wall["median"] / base_wall,
                          "slowdown_cpu": cpu["median"] / base_cpu,
                          "recorder_cpu_s": median_spread([r["recorder_cpu_s"] for r in ok[k]])})
            if "environment" in ok[k][0]:
                entry["environment"] = ok[k][0]["environment"]
        if n is not None and ok[k]:
            entry["ns_per_call"] = entry["wall_s"]["median"] / n * 1e9
            entry["cpu_ns_per_call"] = _spread([r["cpu_s"] / n * 1e9 for r in ok[k]])
            if k != "alone":
                entry["added_cpu_ns_per_call"] = _spread(_added(runs[k], "cpu_s", n))
                entry["added_wall_ns_per_call"] = _spread(_added(runs[k], "wall_s", n))
                counts = [r.get("count") for r in ok[k]]
                entry["counts"] = counts
                entry["exact"] = _exact(k, counts, n)
        out[k] = entry
    if n is not None:
        out["added_cost_vs_syscount"] = _ratio(runs, "nodetape", "syscount", n)
        out["added_cost_vs_bpftrace"] = _ratio(runs, "nodetape", "bpftrace", n)
    return out


def _ratio(runs: dict, a: str, b: str, n: int) -> dict | None:
    """a's added CPU per call over b's, per repeat (each against its own paired run alone)."""
    vals = []
    for ra, rb in zip(runs[a], runs[b]):
        if any("failed" in r or "base_cpu_s" not in r for r in (ra, rb)):
            continue
        db = rb["cpu_s"] - rb["base_cpu_s"]
        if db > 0:
            vals.append((ra["cpu_s"] - ra["base_cpu_s"]) / db)
    return _spread(vals)
