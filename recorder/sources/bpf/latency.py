"""latency: syscall latency log2 histograms per cgroup and syscall (syscall_latency).

sys_enter stamps the thread; sys_exit adds the elapsed time to a cumulative
in-kernel histogram bucket; every interval the growth of each bucket becomes
a row. Costs two tracepoint hits per syscall, so it is heavier than `syscalls`.
"""

from __future__ import annotations

import numpy as np

from ....schemas import batch
from ...source import Batches, RecordContext
from . import BpfSource, shared_resolver, syscall_names
from .counters import CumulativeCounters

KEY = np.dtype([("cgid", "<u8"), ("nr", "<u4"), ("slot", "<u4")])


def bucket_ns(slots: np.ndarray) -> np.ndarray:
    """Slot 0 is a 0 ns latency; slot s >= 1 covers [2^(s-1), 2^s) ns."""
    s = slots.astype(np.int64)
    return np.where(s == 0, 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)))


class SyscallLatencySource(BpfSource):
    name = "latency"
    tables = ("syscall_latency",)
    summary = "syscall latency log2 histograms per cgroup and syscall per interval (raw_syscalls enter/exit)"
    program = "latency.bpf.c"
    tracepoints = ("raw_syscalls:sys_enter", "raw_syscalls:sys_exit")
    max_keys = 131072

    def cflags(self, ctx: RecordContext) -> list[str]:
        return [*super().cflags(ctx), f"-DMAX_KEYS={int(ctx.options.get('latency_max_keys', self.max_keys))}"]

    def start(self, ctx: RecordContext) -> Batches:
        super().start(ctx)
        self.names = syscall_names()
        self.counters = CumulativeCounters(self.bpf[b"hist"], KEY)
        self.interval_start = ctx.clock()
        self._primed = False
        return []

    def _drain(self) -> Batches:
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
        cols = {
            "interval_start_ns": np.full(len(keys), start, dtype=np.int64),
            "interval_end_ns": np.full(len(keys), end, dtype=np.int64),
            "cgroup_id": keys["cgid"],
            "syscall_nr": nrs,
            "syscall_name": [self.names.get(n) for n in nrs.tolist()],
            "bucket_ns": bucket_ns(keys["slot"]),
            "count": counts,
        }
        return self.counted([("syscall_latency", batch("syscall_latency", cols))])

    def poll(self, now_ns: int) -> Batches:
        if not self._primed:
            self._primed = True
            self.due(now_ns)
            return []
        return self._drain() if self.due(now_ns) else []

    def stop(self) -> Batches:
        if self.bpf is None:
            return []
        self.detach()
        out = self._drain()
        self.close_bpf()
        return out
