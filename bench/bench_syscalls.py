"""Syscall-count overhead on syscall-heavy workloads.

Workloads, each in its own cgroup2 cgroup: a compiled tight loop making exactly
N getppid syscalls, and stress-ng's `get` stressor (getpid, getuid, getrlimit,
... a fixed number of bogo-ops). Wall and CPU time of the workload (user+sys,
from wait4's rusage, children included) and the recorder's own CPU while the
workload ran (its user-space side: polling, draining, printing) are measured:

- alone (no tracing);
- under nodetape's `syscalls` source (in-kernel per (cgroup, nr) counting);
- under bcc's syscount (/usr/sbin/syscount-bpfcc, per-syscall counting);
- under bpftrace counting the same tracepoint per (cgroup, nr).

Exactness: each tool's count of getppid for the workload is compared with N
(nodetape and bpftrace by cgroup id; syscount counts node-wide, so other
getppid callers could only add).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

LOOP_C = r"""
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(int argc, char **argv) { long n = atol(argv[1]); for (long i = 0; i < n; i++) syscall(SYS_getppid); return 0; }
"""
UNIFIED = Path("/sys/fs/cgroup/unified")
GETPPID = 110


def _workload(argv: list[str], cgroup: Path) -> dict:
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                         preexec_fn=lambda: open(cgroup / "cgroup.procs", "w").write("0"))
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{argv[0]} failed with status {status}")
    # wait4's rusage covers the child and the descendants it reaped (stress-ng's workers)
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime}


def _pid_cpu_s(pid: int) -> float:
    from .common import proc_cpu_seconds

    return proc_cpu_seconds(pid)


def _wait_line(proc: subprocess.Popen, pattern: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{proc.args[0]} exited before '{pattern}': {proc.stderr.read()[-500:]}")
        if pattern in line:
            return
    raise RuntimeError(f"timeout waiting for '{pattern}'")


def _alone(argv, cg):
    res = _workload(argv, cg)
    res["recorder_cpu_s"] = 0.0
    return res


def _nodetape(argv, cg):
    from nodetape.recorder.source import RecordContext
    from nodetape.recorder.sources.bpf.syscalls import SyscallCountSource

    src = SyscallCountSource()
    ctx = RecordContext()
    src.probe(ctx)
    src.start(ctx)
    cpu0 = time.process_time()  # in this process: the drain at stop is all its user-space work here
    try:
        res = _workload(argv, cg)
    finally:
        batches = src.stop()
    res["recorder_cpu_s"] = time.process_time() - cpu0
    cg_id = os.stat(cg).st_ino
    count = 0
    for _, b in batches:
        d = b.to_pydict()
        count += sum(c for c, i, nr in zip(d["count"], d["cgroup_id"], d["syscall_nr"]) if i == cg_id and nr == GETPPID)
    res["count"] = count
    res["compile_s"] = src.compile_ns / 1e9
    return res


def _syscount(argv, cg):
    env = dict(os.environ)
    p = subprocess.Popen(["/usr/sbin/syscount-bpfcc", "-T", "5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env)
    try:
        _wait_line(p, "Tracing syscalls")
        cpu0 = _pid_cpu_s(p.pid)
        res = _workload(argv, cg)
        res["recorder_cpu_s"] = _pid_cpu_s(p.pid) - cpu0
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    m = re.search(r"^\s*getppid\s+(\d+)", out, re.M)
    res["count"] = int(m.group(1)) if m else None
    return res


def _bpftrace(argv, cg):
    prog = "tracepoint:raw_syscalls:sys_enter { @[cgroup, args->id] = count(); }"
    p = subprocess.Popen(["bpftrace", "-e", prog], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_line(p, "Attaching")
        time.sleep(0.5)  # "Attaching" is printed before the probe is live
        cpu0 = _pid_cpu_s(p.pid)
        res = _workload(argv, cg)
        res["recorder_cpu_s"] = _pid_cpu_s(p.pid) - cpu0
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    m = re.search(rf"^@\[{os.stat(cg).st_ino}, {GETPPID}\]: (\d+)", out, re.M)
    res["count"] = int(m.group(1)) if m else None
    return res


TOOLS = ("alone", "nodetape", "syscount", "bpftrace")


def _summary(runs: dict[str, list[dict]], exact_n: int | None) -> dict:
    from .common import median_spread

    out: dict = {}
    base_wall = median_spread([r["wall_s"] for r in runs["alone"]])["median"]
    base_cpu = median_spread([r["cpu_s"] for r in runs["alone"]])["median"]
    for k, rs in runs.items():
        wall = median_spread([r["wall_s"] for r in rs])
        cpu = median_spread([r["cpu_s"] for r in rs])
        entry = {"wall_s": wall, "cpu_s": cpu, "slowdown_wall": wall["median"] / base_wall,
                 "slowdown_cpu": cpu["median"] / base_cpu,
                 "recorder_cpu_s": median_spread([r["recorder_cpu_s"] for r in rs])}
        if exact_n is not None:
            entry["ns_per_call"] = wall["median"] / exact_n * 1e9
            if k != "alone":
                counts = [r.get("count") for r in rs]
                entry["counts"] = counts
                # syscount counts node-wide: others' getppid calls could only add
                entry["exact"] = (all(c == exact_n for c in counts) if k != "syscount"
                                  else all(c is not None and c >= exact_n for c in counts))
        out[k] = entry
    return out


def run(n: int = 3_000_000, repeats: int = 3, stress_ops: int = 2_000) -> dict:
    """Median wall/CPU time of each workload alone and under each counter, interleaved per repeat."""
    from nodetape.recorder.sources.bpf import env as bpf_env

    bpf_env.probe_bpf()  # also sets BCC_KERNEL_SOURCE for syscount-bpfcc (inherited env)
    fns = {"alone": _alone, "nodetape": _nodetape, "syscount": _syscount, "bpftrace": _bpftrace}
    with tempfile.TemporaryDirectory(prefix="nt-bench-sys-") as d:
        exe = Path(d) / "loop"
        (Path(d) / "loop.c").write_text(LOOP_C)
        subprocess.run(["gcc", "-O2", "-o", str(exe), str(Path(d) / "loop.c")], check=True)
        workloads = {"loop": [str(exe), str(n)],
                     "stress-ng": ["stress-ng", "--get", "1", "--get-ops", str(stress_ops), "--quiet"]}
        cg = UNIFIED / f"nt-bench-{uuid.uuid4().hex[:8]}"
        cg.mkdir()
        try:
            runs = {w: {k: [] for k in TOOLS} for w in workloads}
            for _ in range(repeats):
                for w, argv in workloads.items():
                    for k, fn in fns.items():
                        runs[w][k].append(fn(argv, cg))
        finally:
            os.rmdir(cg)
    out: dict = {"n": n, "repeats": repeats, "stress_ops": stress_ops}
    out.update(_summary(runs["loop"], n))  # the loop's figures stay at the top level (headline keys)
    out["stress_ng"] = _summary(runs["stress-ng"], None)
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
