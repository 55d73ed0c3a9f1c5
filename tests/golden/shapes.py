"""The shape of a fixture tape: what a re-recording must reproduce, times aside.

A shape is what the scenario is about: which tables have rows, which lifecycle
kinds appear on Kubernetes cgroups, which birth stages each container shows, and
the scenario's headline facts (throttling, OOM kill, PSI trigger).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import nodetape


def shape(tape: Path) -> dict:
    db = nodetape.open(tape)
    tables = db.query("tables_overview").to_pylist()
    kinds = db.sql("SELECT DISTINCT kind FROM cgroup_events WHERE pod_uid IS NOT NULL ORDER BY kind")
    births = db.query("pod_births").to_pylist()
    per_container: dict[tuple, set] = {}
    for r in births:
        per_container.setdefault((r["pod_uid"], r["container_id"] or ""), set()).add(r["stage"])
    # containers are anonymous across recordings: compare the multiset of stage sets
    stage_sets = Counter(
        ("pod" if not cid else "container", tuple(sorted(stages))) for (_, cid), stages in per_container.items()
    )
    tl = db.query("throttle_timeline").to_pylist()
    worst = max((r["throttle_pct"] or 0 for r in tl if r["container_id"]), default=0)
    mem = db.query("memory_events").to_pylist()
    psi_events = db.sql("SELECT count(*) AS n FROM psi_events").to_pylist()[0]["n"]
    return {
        "tables": sorted(t["table_name"] for t in tables if t["rows"]),
        "kinds": kinds.column("kind").to_pylist(),
        "births": sorted(f"{kind}:{','.join(stages)} x{n}" for (kind, stages), n in stage_sets.items()),
        "throttled_over_90pct": worst > 90,
        "oom_kill": any(r["kind"] == "oom_kill" for r in mem),
        "psi_trigger_fired": psi_events > 0,
    }
