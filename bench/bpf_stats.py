"""In-program time of BPF programs (BPF_ENABLE_STATS): run_time_ns / run_cnt from fdinfo.

The kernel times each run of every program while a BPF_ENABLE_STATS descriptor
is open (two clock reads per run, so it adds its own cost to every program
alike). This isolates what a program itself costs per call from the hook's
cost and from other work on the machine, which per-run CPU time cannot.
"""

from __future__ import annotations

import contextlib
import ctypes
import os

SYS_BPF = 321  # x86_64
BPF_ENABLE_STATS = 32
BPF_STATS_RUN_TIME = 0


@contextlib.contextmanager
def stats_enabled():
    libc = ctypes.CDLL(None, use_errno=True)
    attr = (ctypes.c_uint8 * 128)()  # union bpf_attr, enable_stats.type = BPF_STATS_RUN_TIME (0)
    fd = libc.syscall(SYS_BPF, BPF_ENABLE_STATS, ctypes.byref(attr), ctypes.sizeof(attr))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"BPF_ENABLE_STATS: {os.strerror(err)}")
    try:
        yield
    finally:
        os.close(fd)


def fd_stats(pid: int | str, fd: int) -> tuple[int, int] | None:
    """(run_time_ns, run_cnt) of a program descriptor; None when fd is not a program."""
    vals = {}
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}") as f:
            for line in f:
                k, _, v = line.partition(":")
                vals[k] = v.strip()
    except OSError:
        return None
    if "prog_type" not in vals or "run_cnt" not in vals:
        return None
    return int(vals["run_time_ns"]), int(vals["run_cnt"])


def process_stats(pid: int) -> tuple[int, int]:
    """Sum of (run_time_ns, run_cnt) over every program descriptor a process holds."""
    t = n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        s = fd_stats(pid, int(fd))
        if s:
            t, n = t + s[0], n + s[1]
    return t, n
