"""latency: syscall latency log2 histograms per cgroup and syscall (syscall_latency).

sys_enter stamps the thread; sys_exit adds the elapsed time to a cumulative
in-kernel histogram bucket; every interval the growth of each bucket becomes
a row. Costs two tracepoint hits per syscall, so it is heavier than `syscalls`.
Raw tracepoints where the kernel allows them; histograms in the cgroup's slot
row (slots.h) or, for cgroups without one and calls of 2^31 ns or more, a hash.
"""

from __future__ import annotations

import numpy as np

from ....schemas import batch
from ...source import Batches
from .interval import IntervalCounterSource

KEY = np.dtype([("cgid", "<u8"), ("nr", "<u4"), ("slot", "<u4")])


def bucket_ns(slots: np.ndarray) -> np.ndarray:
    """Slot 0 is a 0 ns latency; slot s >= 1 covers [2^(s-1), 2^s) ns."""
    s = slots.astype(np.int64)
    return np.where(s == 0, 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)))


class SyscallLatencySource(IntervalCounterSource):
    name = "latency"
    tables = ("syscall_latency",)
    summary = "syscall latency log2 histograms per cgroup and syscall per interval (raw_syscalls enter/exit)"
    program = "latency.bpf.c"
    tracepoints = ("raw_syscalls:sys_enter", "raw_syscalls:sys_exit")
    map_name = b"hist"
    slot_map = b"hist_slots"
    slots = 32  # a row is NR_MAX x 32 buckets (128 KiB): 4 MiB of kernel memory
    slots_option = "latency_slots"
    buckets = 32  # [0 ns, 2^31 ns); longer calls are counted in the hash
    key = KEY
    max_keys = 131072
    max_keys_option = "latency_max_keys"

    def rows(self, keys, counts, start, end) -> Batches:
        cols = {**self.syscall_columns(keys, start, end), "bucket_ns": bucket_ns(keys["slot"]), "count": counts}
        return [("syscall_latency", batch("syscall_latency", cols))]
