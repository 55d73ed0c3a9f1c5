"""Syscall-count overhead on syscall-heavy workloads, beside bcc's syscount and bpftrace.

Workloads, each in its own cgroup2 cgroup: a compiled tight loop making exactly
N getppid syscalls, and stress-ng's `get` stressor (getpid, getuid, getrlimit,
... a fixed number of bogo-ops). Each repeat runs, for every workload and counter
(in a rotated order), the workload alone and then under the counter, so load
from other work on the machine falls on both runs of a pair alike:

- nodetape's `syscalls` source (in-kernel per (cgroup, nr) counting; the
  cgroup already owns its slot, as every cgroup does after its first interval);
- bcc's syscount (/usr/sbin/syscount-bpfcc, per-syscall counting);
- bpftrace counting the same calls per (cgroup, nr).

The figure is the *added cost per call*: the workload's CPU time (user + sys
from wait4's rusage: the BPF program runs in the caller's sys time) under a
counter minus its paired run alone, divided by N; wall-time figures are
kept beside it. A peer that fails or hangs (bpftrace once did not exit within
60 s of SIGINT) is recorded as failed with its reason and the section goes on.

Exactness: each tool's count of getppid for the workload is compared with N
(nodetape and bpftrace by cgroup id; syscount counts node-wide, so other
getppid callers could only add).
"""

from __future__ import annotations

import os
import re
import select
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
WARMUP = 1000  # calls made (and drained) before nodetape's measured run: the cgroup gets its slot
READY_S = 30.0  # a peer must say it is tracing within this
EXIT_S = 20.0  # ... and exit within this after SIGINT, else it is recorded as failed


class PeerFailed(RuntimeError):
    pass


def build_loop(d: Path) -> Path:
    exe = d / "loop"
    (d / "loop.c").write_text(LOOP_C)
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(d / "loop.c")], check=True)
    return exe


def workload(argv: list[str], cgroup: Path) -> dict:
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                         preexec_fn=lambda: open(cgroup / "cgroup.procs", "w").write("0"))
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{argv[0]} failed with status {status}")
    # wait4's rusage covers the child and the descendants it reaped (stress-ng's workers)
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime}


def _wait_line(proc: subprocess.Popen, pattern: str, timeout: float = READY_S) -> None:
    deadline = time.monotonic() + timeout
    buf = ""
    while time.monotonic() < deadline:
        r, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            break
        chunk = os.read(proc.stdout.fileno(), 4096).decode(errors="replace")
        if not chunk:
            raise PeerFailed(f"{proc.args[0]} exited before '{pattern}': {proc.stderr.read()[-300:]!r}")
        buf += chunk
        if pattern in buf:
            return
    raise PeerFailed(f"{proc.args[0]} did not print '{pattern}' within {timeout:.0f} s")


def _peer(argv: list[str], ready: str, wl: list[str], cg: Path, settle_s: float = 0.0) -> tuple[dict, str]:
    """Run a peer tool around the workload; returns the workload's figures and the peer's output."""
    from .bpf_stats import process_stats
    from .common import proc_cpu_seconds

    # a shell's background job (`cmd &`) starts with SIGINT ignored, and the child inherits that: a
    # Python tool (syscount) then never sees SIGINT and never prints (it hung every run that way here)
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        _wait_line(p, ready)
        time.sleep(settle_s)
        cpu0, prog0 = proc_cpu_seconds(p.pid), process_stats(p.pid)
        res = workload(wl, cg)
        prog1 = process_stats(p.pid)
        res["recorder_cpu_s"] = proc_cpu_seconds(p.pid) - cpu0
        res["prog_ns"], res["prog_runs"] = prog1[0] - prog0[0], prog1[1] - prog0[1]
        p.send_signal(signal.SIGINT)
        try:
            out, _ = p.communicate(timeout=EXIT_S)
        except subprocess.TimeoutExpired:
            raise PeerFailed(f"{argv[0]} did not exit within {EXIT_S:.0f} s of SIGINT") from None
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return res, out.decode(errors="replace")


def _alone(wl, cg):
    return {**workload(wl, cg), "recorder_cpu_s": 0.0}


def _nodetape(wl, cg):
    from nodetape.recorder.source import RecordContext
    from nodetape.recorder.sources.bpf.syscalls import SyscallCountSource

    src = SyscallCountSource()
    ctx = RecordContext()
    src.probe(ctx)
    src.start(ctx)
    batches = []
    try:
        workload(_warmup_argv(wl), cg)
        batches += src._drain()  # the first interval: the cgroup was seen in the hash and gets its slot
        prog0 = _own_prog_stats(src)
        cpu0 = time.process_time()  # in this process: the drain at stop is all its user-space work here
        res = workload(wl, cg)
        prog1 = _own_prog_stats(src)
        res["prog_ns"], res["prog_runs"] = prog1[0] - prog0[0], prog1[1] - prog0[1]
    finally:
        batches += src.stop()
    res["recorder_cpu_s"] = time.process_time() - cpu0
    res["environment"] = {k: v for k, v in src.environment().items() if k in ("attach", "cgroup_slots")}
    cg_id = os.stat(cg).st_ino
    count = 0
    for _, b in batches:
        d = b.to_pydict()
        count += sum(c for c, i, nr in zip(d["count"], d["cgroup_id"], d["syscall_nr"]) if i == cg_id and nr == GETPPID)
    res["count"] = count - WARMUP if _is_loop(wl) else None
    res["compile_s"] = src.compile_ns / 1e9
    return res


def _own_prog_stats(src) -> tuple[int, int]:
    from .bpf_stats import fd_stats

    t = n = 0
    for fn in src.bpf.funcs.values():
        st = fd_stats("self", fn.fd)
        if st:
            t, n = t + st[0], n + st[1]
    return t, n


def _is_loop(wl) -> bool:
    return not wl[0].endswith("stress-ng")


def _warmup_argv(wl):
    return [wl[0], str(WARMUP)] if _is_loop(wl) else ["stress-ng", "--get", "1", "--get-ops", "10", "--quiet"]


def _syscount(wl, cg):
    res, out = _peer(["/usr/sbin/syscount-bpfcc", "-T", "5"], "Tracing syscalls", wl, cg)
    m = re.search(r"^\s*getppid\s+(\d+)", out, re.M)
    res["count"] = int(m.group(1)) if m else None
    return res


def _bpftrace(wl, cg):
    prog = "tracepoint:raw_syscalls:sys_enter { @[cgroup, args->id] = count(); }"
    # "Attaching" is printed before the probe is live
    res, out = _peer(["bpftrace", "-e", prog], "Attaching", wl, cg, settle_s=0.5)
    m = re.search(rf"^@\[{os.stat(cg).st_ino}, {GETPPID}\]: (\d+)", out, re.M)
    res["count"] = int(m.group(1)) if m else None
    return res


TOOLS = {"alone": _alone, "nodetape": _nodetape, "syscount": _syscount, "bpftrace": _bpftrace}


def _one(fn, wl, cg) -> dict:
    try:
        return fn(wl, cg)
    except Exception as e:  # a failed or hung peer is a result, not the end of the section
        return {"failed": f"{type(e).__name__}: {e}"}


def program_time(exe: Path, cg: Path, n: int, repeats: int) -> dict:
    """nodetape's and syscount's in-program ns per run, with the kernel's BPF run-time stats on
    (a separate pass: the stats' own clock reads would inflate the figures above)."""
    from .bench_syscalls_summary import _spread
    from .bpf_stats import stats_enabled

    out: dict = {}
    wl = [str(exe), str(n)]
    with stats_enabled():
        for k in ("nodetape", "syscount"):
            rs = [_one(TOOLS[k], wl, cg) for _ in range(repeats)]
            vals = [r["prog_ns"] / r["prog_runs"] for r in rs if r.get("prog_runs")]
            out[k] = {"ns_per_run": _spread(vals), "failures": [r["failed"] for r in rs if "failed" in r]}
    return out


def run(n: int = 3_000_000, repeats: int = 3, stress_ops: int = 2_000) -> dict:
    """Each workload alone and under each counter, interleaved per repeat."""
    from nodetape.recorder.sources.bpf import env as bpf_env

    from .bench_syscalls_summary import summary

    bpf_env.probe_bpf()  # also sets BCC_KERNEL_SOURCE for syscount-bpfcc (inherited env)
    with tempfile.TemporaryDirectory(prefix="nt-bench-sys-") as d:
        exe = build_loop(Path(d))
        workloads = {"loop": [str(exe), str(n)],
                     "stress-ng": ["stress-ng", "--get", "1", "--get-ops", str(stress_ops), "--quiet"]}
        cg = UNIFIED / f"nt-bench-{uuid.uuid4().hex[:8]}"
        cg.mkdir()
        try:
            try:
                prog = program_time(exe, cg, min(n, 1_000_000), repeats)
            except Exception as e:
                prog = {"failed": f"{type(e).__name__}: {e}"}
            runs = {w: {k: [] for k in TOOLS} for w in workloads}
            peers = [k for k in TOOLS if k != "alone"]
            for i in range(repeats):
                for w, argv in workloads.items():
                    for k in peers[i % len(peers):] + peers[: i % len(peers)]:  # rotated: no tool always first
                        base = _one(_alone, argv, cg)
                        runs[w]["alone"].append(base)
                        res = _one(TOOLS[k], argv, cg)
                        if "failed" not in base:  # each run is paired with the run alone just before it
                            res.update(base_cpu_s=base["cpu_s"], base_wall_s=base["wall_s"])
                        runs[w][k].append(res)
        finally:
            os.rmdir(cg)
    out: dict = {"n": n, "repeats": repeats, "stress_ops": stress_ops}
    out.update(summary(runs["loop"], n))  # the loop's figures stay at the top level (headline keys)
    out["stress_ng"] = summary(runs["stress-ng"], None)
    out["program_time"] = prog
    try:  # the design alternatives, same loop, same lock: where nodetape's cost sits
        from .bench_syscall_design import run as design

        out["design"] = design(n=min(n, 2_000_000), repeats=repeats)
    except Exception as e:
        out["design"] = {"failed": f"{type(e).__name__}: {e}"}
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
