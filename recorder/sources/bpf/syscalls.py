"""syscalls: per-cgroup, per-syscall counts, counted in the kernel, exact.

raw_syscalls:sys_enter adds 1 to a cumulative counter per (cgroup2 id,
syscall nr) with an atomic add; every interval the map is read in one batch
syscall and the growth of each counter becomes a syscall_counts row.
"""

from __future__ import annotations

import numpy as np

from ....schemas import batch
from ...source import Batches, RecordContext
from . import BpfSource, shared_resolver, syscall_names
from .counters import CumulativeCounters

KEY = np.dtype([("cgid", "<u8"), ("nr", "<u4"), ("pad", "<u4")])


class SyscallCountSource(BpfSource):
    name = "syscalls"
    tables = ("syscall_counts",)
    summary = "syscalls per cgroup and syscall per interval, counted in the kernel on raw_syscalls:sys_enter (exact)"
    program = "syscalls.bpf.c"
    tracepoints = ("raw_syscalls:sys_enter",)
    max_keys = 65536

    def cflags(self, ctx: RecordContext) -> list[str]:
        return [*super().cflags(ctx), f"-DMAX_KEYS={int(ctx.options.get('syscall_max_keys', self.max_keys))}"]

    def start(self, ctx: RecordContext) -> Batches:
        super().start(ctx)
        self.names = syscall_names()
        self.counters = CumulativeCounters(self.bpf[b"counts"], KEY)
        self.interval_start = ctx.clock()
        self._due_started = False
        return []

    def _drain(self, now_ns: int) -> Batches:
        live = None
        if self.counters.wants_eviction():
            res = shared_resolver(self.ctx)
            res.rescan()
            live = set(res.paths)
        keys, counts = self.counters.read_deltas(live)
        end = self.ctx.clock()
        start, self.interval_start = self.interval_start, end
        self.update_drops()
        if not len(keys):
            return []
        nrs = keys["nr"].astype(np.int32)
        names = self.names
        cols = {
            "interval_start_ns": np.full(len(keys), start, dtype=np.int64),
            "interval_end_ns": np.full(len(keys), end, dtype=np.int64),
            "cgroup_id": keys["cgid"],
            "syscall_nr": nrs,
            "syscall_name": [names.get(n) for n in nrs.tolist()],
            "count": counts,
        }
        return self.counted([("syscall_counts", batch("syscall_counts", cols))])

    def poll(self, now_ns: int) -> Batches:
        if not self._due_started:
            # the first due() would fire at once; start counting from start()
            self._due_started = True
            self.due(now_ns)
            return []
        if not self.due(now_ns):
            return []
        return self._drain(now_ns)

    def stop(self) -> Batches:
        if self.bpf is None:
            return []
        self.detach()  # no call after this read can be missed: none are counted any more
        out = self._drain(self.ctx.clock())
        self.close_bpf()
        return out
