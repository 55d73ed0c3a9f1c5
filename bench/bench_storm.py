"""Benchmark of the recorder loop during a cgroup storm: how long its longest polls take.

Recording cgroup, samples and psi, another process makes and removes nested
cgroups (PARENTS x CHILDREN per round) in cgroup2 and the v1 cpu, cpuacct,
memory and pids hierarchies as fast as it can, moving a process through some of
them so cgroup.events fires: the churn of a node starting and stopping many
pods at once. The figures are each source's longest single poll (from the
manifest), beside the loop's tick (50 ms, the ceiling a poll should stay near)
and the tree's drain budget (20 ms, what one drain may hold the lock for), and
how many cgroups the storm made in how long. The kernel test of the same storm
(tests/kernel/test_cgroup_storm.py) proves that no cgroup is missing; timings
live here, not in a test.

    python -m bench.bench_storm
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PARENTS, CHILDREN, ROUNDS = 100, 30, 2
HIERARCHIES = ("cpu", "cpuacct", "memory", "pids")
TICK_NS = 50_000_000

# runs in its own process, as a container runtime would: the recorder's process is what is measured
STORM = """
import os, sys, time
bases, parents, children, rounds = sys.argv[1].split(","), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
sleeper = int(sys.argv[5])
unified = bases[0]
for r in range(rounds):
    for b in bases:
        for p in range(parents):
            os.mkdir(f"{b}/p{p}")
            for c in range(children):
                os.mkdir(f"{b}/p{p}/c{c}")
    for p in range(0, parents, 5):  # a process moved through: the last one stays populated a while
        with open(f"{unified}/p{p}/c0/cgroup.procs", "w") as f:
            f.write(str(sleeper))
    time.sleep(1.0)  # longer than the reader lags behind the storm, so its cgroup.events read says populated
    with open(f"{unified}/cgroup.procs", "w") as f:
        f.write(str(sleeper))
    for b in bases:
        for p in range(parents):
            for c in range(children):
                os.rmdir(f"{b}/p{p}/c{c}")
            os.rmdir(f"{b}/p{p}")
    time.sleep(0.3)
"""


def storm_paths(name: str, parents: int = PARENTS, children: int = CHILDREN) -> set[str]:
    """Every cgroup path (relative to a hierarchy) that one round of the storm makes below /name."""
    return {f"/{name}/p{p}" for p in range(parents)} | {
        f"/{name}/p{p}/c{c}" for p in range(parents) for c in range(children)}


def record_storm(out: Path, bases: list[Path], cgroup_root: Path, parents: int = PARENTS, children: int = CHILDREN,
                 rounds: int = ROUNDS, seconds: float = 10.0) -> tuple[dict, subprocess.CompletedProcess, float]:
    """Record cgroup, samples and psi into `out` while STORM runs over `bases` (unified first).

    Returns the manifest, the storm process's result and how long it ran (s)."""
    from nodetape.recorder.loop import Recorder, RecordOptions
    from nodetape.recorder.source import RecordContext

    sleeper = subprocess.Popen(["sleep", str(int(seconds) + 30)])
    ctx = RecordContext(cgroup_root=cgroup_root, interval_ns=250_000_000)
    rec = Recorder(RecordOptions(out=out, sources=["cgroup", "samples", "psi"], ctx=ctx,
                                 duration_ns=int(seconds * 1e9), tick_ns=TICK_NS))
    result: dict = {}

    def storm():
        deadline = time.monotonic() + 10
        while "cgroup_tree" not in ctx.shared and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)
        t0 = time.monotonic()
        result["storm"] = subprocess.run(
            [sys.executable, "-c", STORM, ",".join(map(str, bases)), str(parents), str(children), str(rounds),
             str(sleeper.pid)], check=False, capture_output=True, text=True, timeout=60)
        result["storm_s"] = time.monotonic() - t0

    th = threading.Thread(target=storm)
    try:
        th.start()
        manifest = rec.run()
        th.join()
    finally:
        sleeper.kill()
        sleeper.wait()
    return manifest, result["storm"], result["storm_s"]


def run(parents: int = PARENTS, children: int = CHILDREN, rounds: int = ROUNDS,
        cgroup_root: str = "/sys/fs/cgroup") -> dict:
    from nodetape.recorder.cgroup_tree import DRAIN_BUDGET_NS
    from nodetape.recorder.sources.admission import MAX_NEW_PER_SAMPLE
    from nodetape.recorder.kernelfs.cgroupfs import detect_layout

    from nodetape.tape.reader import connect, open_tapes

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from kernelutil import rmdir_tree

    layout = detect_layout(cgroup_root)
    name = f"nt-bench-storm-{time.monotonic_ns()}"
    hiers = [layout.controllers[c] for c in HIERARCHIES if c in layout.controllers]
    if layout.v2_root is None:
        raise RuntimeError("needs a cgroup2 hierarchy")
    bases = [layout.v2_root / name] + [layout.hierarchies[h] / name for h in dict.fromkeys(hiers)]
    for b in bases:
        b.mkdir()
    try:
        with tempfile.TemporaryDirectory(prefix="nt-bench-storm-") as tmp:
            manifest, proc, storm_s = record_storm(Path(tmp) / "tape", bases, Path(cgroup_root), parents, children,
                                                   rounds)
            if proc.returncode != 0:
                raise RuntimeError(f"storm failed: {proc.stderr[-500:]}")
            con = connect(open_tapes([Path(tmp) / "tape"]))
            want = storm_paths(name, parents, children)
            recorded = con.execute("SELECT count(DISTINCT (hierarchy, cgroup_path)) FROM cgroup_events "
                                   "WHERE kind IN ('created', 'seen') AND cgroup_path LIKE ?",
                                   [f"/{name}/%"]).fetchone()[0]
    finally:
        for b in bases:
            rmdir_tree(b)
    made = len(want) * len(bases) * rounds
    return {
        "cgroups_made": made, "hierarchies": len(bases), "storm_s": round(storm_s, 2),
        "mkdir_rmdir_per_s": round(2 * made / storm_s),
        "distinct_cgroups_recorded": recorded, "distinct_cgroups_expected": len(want) * len(bases),
        "tick_ms": TICK_NS / 1e6, "drain_budget_ms": DRAIN_BUDGET_NS / 1e6,
        "max_poll_ms": {s: m["max_poll_ms"] for s, m in manifest["sources"].items()},
        "dropped": {s: m["dropped"] for s, m in manifest["sources"].items() if m.get("dropped")},
        "max_new_per_sample": MAX_NEW_PER_SAMPLE,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
