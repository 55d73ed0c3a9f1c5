"""Idle figures of this tree beside a peer tree (another commit, its own checkout and venv), interleaved.

    python -m bench.idle_peer PEER_TREE [RUNS] [PEER_RUNS]

Holds the shared benchmark lock for the whole comparison, then records an idle node with every source
(bench_recording's `_record`, for both trees: IDLE_S seconds, CPU in the steady state, memory from
smaps_rollup) alternating this tree and the peer: ours, peer, ours, peer, ours. Interleaving matters
on a shared machine: what else runs drifts over minutes, and both sides see the same drift. Prints one JSON object: this tree's runs in
the shape of bench_recording.run()'s "idle"/"idle_runs", and the peer's per-run figures.
"""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
from pathlib import Path

from .bench_queries import LOCK
from .bench_recording import IDLE_S, _record, _spread


def _peer_run(tree: Path, seconds: int) -> dict:
    """One idle run of the peer's nodetape (its tree, its .venv), measured by this tree's `_record`:
    both sides are measured by the same code, whatever the peer's own benchmark did."""
    r = _record("idle-peer", seconds, tree=tree)
    return {"cpu_pct": r["cpu_pct"], "anon_mib": r["anon_bytes"] / 2**20, "file_mib": r["file_bytes"] / 2**20,
            "bytes_per_s": r["bytes_per_s"],
            "bytes_per_row_cgroup_samples": r["tables"].get("cgroup_samples", {}).get("bytes_per_row")}


def compare(peer: Path, runs: int = 3, peer_runs: int = 2, seconds: int = IDLE_S) -> dict:
    ours, theirs = [], []
    with open(LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for i in range(max(runs, peer_runs)):
            if i < runs:
                ours.append(_record("idle", seconds))
            if i < peer_runs:
                theirs.append(_peer_run(peer, seconds))
    median = sorted(ours, key=lambda r: r["cpu_pct"])[len(ours) // 2]
    commit = subprocess.run(["git", "-C", str(peer), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return {"idle": median, "idle_runs": _spread(ours),
            "peer": {"tree": str(peer), "commit": commit.stdout.strip() or None, "runs": theirs}}


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    res = compare(Path(args[0]).resolve(), *(int(a) for a in args[1:3]))
    print(json.dumps(res, indent=2, default=str))
