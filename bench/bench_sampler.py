"""Benchmark of the `samples` source: CPU per interval and RSS at 100, 1000, 5000 cgroups.

Real v1 cgroups (cpu, cpuacct, memory, pids hierarchies; needs root) are made
under <hierarchy>/nt-bench-<pid>/cg<i> and removed afterwards. The source is
driven directly (start, then one sample per simulated interval), so the number
is the source's own cost per interval, without the loop's sleep. The first
sample (opening descriptors, reading limits) is reported separately.

    python -m bench.bench_sampler
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .common import median_spread

CONTROLLERS = ("cpu", "cpuacct", "memory", "pids")


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _make(base_dirs: list[Path], n: int) -> None:
    for b in base_dirs:
        b.mkdir(exist_ok=True)
        for i in range(n):
            (b / f"cg{i}").mkdir(exist_ok=True)


def _remove(base_dirs: list[Path]) -> None:
    for b in base_dirs:
        if not b.exists():
            continue
        for d in os.listdir(b):
            if os.path.isdir(b / d):
                os.rmdir(b / d)
        os.rmdir(b)


def run(counts=(100, 1000, 5000), seconds: float = 5.0, cgroup_root: str = "/sys/fs/cgroup") -> dict:
    """Per count: CPU seconds per sample (mean over `seconds` samples), first-sample CPU, rows, RSS."""
    from nodetape.recorder.kernelfs.cgroupfs import detect_layout
    from nodetape.recorder.source import RecordContext
    from nodetape.recorder.sources.cgroup_samples import CgroupSamplesSource

    layout = detect_layout(cgroup_root)
    hiers = {layout.controllers[c] for c in CONTROLLERS if c in layout.controllers}
    bases = [layout.hierarchies[h] / f"nt-bench-{os.getpid()}" for h in sorted(hiers)]
    results = {}
    try:
        for n in counts:
            _make(bases, n)
            ctx = RecordContext(cgroup_root=Path(cgroup_root))
            src = CgroupSamplesSource()
            src.probe(ctx)
            src.start(ctx)
            t0 = time.process_time()
            first = src.sample()
            first_cpu = time.process_time() - t0
            samples = max(1, int(seconds))
            cpu = []
            rows = 0
            for _ in range(samples):
                t0 = time.process_time()
                b = src.sample()
                cpu.append(time.process_time() - t0)
                rows = b[0][1].num_rows if b else 0
                time.sleep(max(0.0, 1.0 - cpu[-1]))  # one interval of 1 s, as recorded
            rss = _rss()
            src.stop()
            mean = sum(cpu) / len(cpu)
            results[n] = {
                "cgroups": n, "rows_per_sample": rows, "first_sample_cpu_ms": round(first_cpu * 1e3, 2),
                "cpu_ms_per_sample": round(mean * 1e3, 2), "core_pct_at_1s": round(mean * 100, 2),
                "max_cpu_ms_per_sample": round(max(cpu) * 1e3, 2), "rss_mb": round(rss / 2**20, 1),
                "first_rows": first[0][1].num_rows if first else 0,
                "cpu_ms_per_sample_spread": median_spread([c * 1e3 for c in cpu]),
            }
            _remove(bases)
    finally:
        _remove(bases)
    return results


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
