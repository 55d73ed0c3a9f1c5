"""Base of the raw-stream sources (lineage, cgroup-tp, opens, drops).

Each program writes fixed-size records into its own BPF ring buffer `events`
and counts failed reservations in `drops`. Records are submitted without a
wake-up (waking us per record would only cost the producer), except one in
about a quarter ring's worth, which forces one (common.h: wake_flags). The
loop sleeps on the ring's fd (wait_fds, edge-triggered) and drains it every
interval, or as soon as a burst forces a wake-up (never more often than its
tick), so an idle recorder sleeps and a busy ring never waits to fill.
Every poll takes at most `max_bytes` of records in one batch (ringbuf.py), so
the recorder stays responsive whatever the event rate; the excess is counted
in the kernel as ringbuf_full drops.

The drop counters are read once an interval, except while they provably cannot have
moved: the ring was empty at the last interval's poll and its producer position has not
moved since (no reservation was made, so none failed: a ringbuf_full drop needs a full
ring). A rate-limited program (opens, drops: common.h rate_ok) also drops without
reserving, but only within one event's budget (`rate_window_ns`) of an event that passed
and reserved (drops: in the same run of the program), so there the ring must have been
still for two intervals in a row (and the budget be under half an interval; opens reserves
at the call's exit, any time later, so its counters are read every interval). An idle node's
ring sources then cost a read of two positions an interval, not a bpf(2) call.
"""

from __future__ import annotations

import mmap
import os
from typing import ClassVar

import numpy as np
import pyarrow as pa

from ...source import Batches, RecordContext
from . import BpfSource
from .ringbuf import record_size, ringbuf_consumer


def arrow_cols(cols: dict) -> dict:
    """numpy masked arrays -> Arrow arrays with nulls (absent is NULL, never 0)."""
    out = {}
    for k, v in cols.items():
        if isinstance(v, np.ma.MaskedArray):
            out[k] = pa.array(v.data, mask=np.ma.getmaskarray(v))
        else:
            out[k] = v
    return out


def cstr(a: np.ndarray) -> list[str]:
    """Fixed-size C string fields (numpy 'S' dtype) -> str, cut at the first NUL, in one pass.

    bpf_probe_read_*_str writes the string and its NUL but leaves the rest of a
    reused buffer as it was, so bytes after the terminator are stale data from an
    earlier, longer string (numpy only strips trailing NULs).
    """
    if not a.size:
        return []
    width = a.dtype.itemsize
    raw = np.ascontiguousarray(a).view(np.uint8).reshape(len(a), width).copy()
    raw[np.cumsum(raw == 0, axis=1) > 0] = 0  # everything from the first NUL on
    return np.char.decode(raw.view(f"S{width}").reshape(len(a)), "utf-8", errors="replace").tolist()


def drops_still(cons: int, prod: int, still: int, still_at: int | None, rate_window_ns: int,
                interval_ns: int) -> tuple[int, int | None, bool]:
    """(still, still_at, skip) after one interval's read of a ring at positions (cons, prod):
    `still` counts the intervals in a row the ring was empty at the producer position
    `still_at`; skip says the drop counters cannot have moved since the last interval."""
    still = still + 1 if cons == prod and prod == still_at else 0
    need = 1 if not rate_window_ns else 2 if 2 * rate_window_ns < interval_ns else None
    return still, prod if cons == prod else None, need is not None and still >= need


class RawStreamSource(BpfSource):
    record: ClassVar[np.dtype]
    # ring buffer size in pages (power of 2); options[<name>_ringbuf_pages] overrides
    ringbuf_pages: ClassVar[int] = 256
    # a rate-limited program's drops come within this long of an event that reserved (0: no rate limit)
    rate_window_ns: int = 0
    _still, _still_at = 0, None  # intervals the ring has been empty and still, at this producer position

    def pages(self, ctx: RecordContext) -> int:
        n = int(ctx.options.get(f"{self.name.replace('-', '_')}_ringbuf_pages", self.ringbuf_pages))
        if n <= 0 or n & (n - 1):
            raise ValueError(f"{self.name}: ring buffer pages must be a power of 2, got {n}")
        return n

    def cflags(self, ctx: RecordContext) -> list[str]:
        pages = self.pages(ctx)
        # a forced wake-up per quarter ring, spread over the CPUs (common.h: wake_flags)
        per_cpu = pages * mmap.PAGESIZE // record_size(self.record.itemsize) // 4 // (os.cpu_count() or 1)
        return [*super().cflags(ctx), f"-DRINGBUF_PAGES={pages}", f"-DRINGBUF_WAKE_RECORDS={max(per_cpu, 1)}"]

    def start(self, ctx: RecordContext) -> Batches:
        super().start(ctx)
        max_bytes = ctx.options.get(f"{self.name.replace('-', '_')}_max_bytes_per_poll")
        self.consumer = ringbuf_consumer(self.bpf[b"events"], self.record, max_bytes)
        self._after_start(ctx)
        return []

    def _after_start(self, ctx: RecordContext) -> None:
        pass

    def decode(self, recs: np.ndarray) -> Batches:
        raise NotImplementedError

    def next_poll_ns(self) -> int | None:
        return self._next_due_ns if self._next_due_ns is not None else 0

    def _drops_still(self) -> bool:
        """Whether the drop counters cannot have moved since they were last read (docstring above);
        called once an interval, after the ring is read."""
        cons, prod = self.consumer.positions()
        self._still, self._still_at, skip = drops_still(cons, prod, self._still, self._still_at,
                                                        self.rate_window_ns, self.ctx.interval_ns)
        return skip

    def wait_fds(self) -> list[int]:
        return [self.consumer.fd]

    def poll(self, now_ns: int) -> Batches:
        recs = self.consumer.read()
        if self.due(now_ns) and not self._drops_still():
            self.update_drops()
        if not len(recs):
            return []
        return self.counted(self.decode(recs))

    def stop(self) -> Batches:
        if self.bpf is None:
            return []
        self.detach()
        out: Batches = []
        # what was committed before detaching: at most one ring's worth, so bounded
        for _ in range(self.consumer.size // self.consumer.max_bytes + 2):
            recs = self.consumer.read()
            if not len(recs):
                break
            out += self.counted(self.decode(recs))
        self.update_drops()
        self.consumer.close()
        self.close_bpf()
        return out
