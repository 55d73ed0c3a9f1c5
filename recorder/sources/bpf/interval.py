"""The shared lifecycle of sources that count in the kernel and drain once per interval.

The kernel adds to cumulative counters keyed by (cgroup id, syscall nr, ...);
every interval one batch read turns their growth into rows. Subclasses name
their map, key layout and option, and turn (keys, deltas) into a batch.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ...source import Batches, RecordContext
from . import BpfSource, shared_resolver, syscall_names
from .counters import CumulativeCounters


class IntervalCounterSource(BpfSource):
    map_name: ClassVar[bytes] = b""
    key: ClassVar[np.dtype]
    max_keys: ClassVar[int] = 65536
    max_keys_option: ClassVar[str] = ""
    sampled = True  # poll() drains only when due(): the loop sleeps between intervals

    def cflags(self, ctx: RecordContext) -> list[str]:
        return [*super().cflags(ctx), f"-DMAX_KEYS={int(ctx.options.get(self.max_keys_option, self.max_keys))}"]

    def start(self, ctx: RecordContext) -> Batches:
        super().start(ctx)
        self.names = syscall_names()
        self.counters = CumulativeCounters(self.bpf[self.map_name], self.key)
        self.interval_start = ctx.clock()
        self._primed = False
        return []

    def rows(self, keys: np.ndarray, counts: np.ndarray, start: int, end: int) -> Batches:
        raise NotImplementedError

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
        return self.counted(self.rows(keys, counts, start, end))

    def syscall_columns(self, keys: np.ndarray, start: int, end: int) -> dict:
        nrs = keys["nr"].astype(np.int32)
        return {
            "interval_start_ns": np.full(len(keys), start, dtype=np.int64),
            "interval_end_ns": np.full(len(keys), end, dtype=np.int64),
            "cgroup_id": keys["cgid"],
            "syscall_nr": nrs,
            "syscall_name": [self.names.get(n) for n in nrs.tolist()],
        }

    def poll(self, now_ns: int) -> Batches:
        if not self._primed:
            # the first due() would fire at once; counting started in start()
            self._primed = True
            self.due(now_ns)
            return []
        return self._drain() if self.due(now_ns) else []

    def stop(self) -> Batches:
        if self.bpf is None:
            return []
        self.detach()  # no call after this read can be missed: none are counted any more
        out = self._drain()
        self.close_bpf()
        return out
