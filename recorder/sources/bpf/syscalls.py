"""syscalls: per-cgroup, per-syscall counts, counted in the kernel, exact.

sys_enter (a raw tracepoint; the classic raw_syscalls:sys_enter where raw
tracepoints are refused) adds 1 to a cumulative counter per (cgroup2 id,
syscall nr) with an atomic add: in the cgroup's slot row of an array (slots.h),
or in a hash for a cgroup without a slot yet. Every interval both are read and
the growth of each counter becomes a syscall_counts row.
"""

from __future__ import annotations

import numpy as np

from ....schemas import batch
from ...source import Batches
from .interval import IntervalCounterSource

KEY = np.dtype([("cgid", "<u8"), ("nr", "<u4"), ("pad", "<u4")])


class SyscallCountSource(IntervalCounterSource):
    name = "syscalls"
    tables = ("syscall_counts",)
    summary = "syscalls per cgroup and syscall per interval, counted in the kernel on sys_enter (exact)"
    program = "syscalls.bpf.c"
    tracepoints = ("raw_syscalls:sys_enter",)
    map_name = b"counts"
    slot_map = b"slot_counts"
    slots_option = "syscall_slots"
    key = KEY
    max_keys = 65536
    max_keys_option = "syscall_max_keys"

    def rows(self, keys, counts, start, end) -> Batches:
        cols = {**self.syscall_columns(keys, start, end), "count": counts}
        return [("syscall_counts", batch("syscall_counts", cols))]
