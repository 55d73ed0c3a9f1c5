"""latency: syscall latency log2 histograms per cgroup and syscall (syscall_latency).

sys_enter stamps the thread; sys_exit adds the elapsed time to a cumulative
in-kernel histogram bucket; every interval the growth of each bucket becomes
a row. Costs two tracepoint hits per syscall, so it is heavier than `syscalls`.
Raw tracepoints where the kernel allows them; histograms in the cgroup's slot
row (slots.h) or, for cgroups without one and calls of 2^31 ns or more, a hash.
"""

from __future__ import annotations

import contextlib

import numpy as np

from ....schemas import batch
from ...source import Batches, RecordContext, SourceUnavailable
from .interval import IntervalCounterSource

START_STORES = ("task_storage", "lru_hash")  # where a call's start time waits for its exit
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

    def __init__(self) -> None:
        super().__init__()
        self.start_store = None

    def cflags(self, ctx: RecordContext) -> list[str]:
        return super().cflags(ctx) + (["-DSTART_TASK_STORAGE"] if self.start_store == "task_storage" else [])

    def _load(self, ctx: RecordContext, want: str) -> None:
        """Task storage (one lookup in the task) where the kernel allows it from this program, else the LRU hash."""
        stores = START_STORES
        forced = ctx.options.get("latency_start_store")
        if forced is not None:
            if forced not in START_STORES:
                raise SourceUnavailable(f"option latency_start_store: {forced!r} is not one of {', '.join(START_STORES)}")
            stores = (forced,)
        for store in stores[:-1]:
            self.start_store = store
            with contextlib.suppress(SourceUnavailable):
                return super()._load(ctx, want)
        self.start_store = stores[-1]
        super()._load(ctx, want)

    def variant(self) -> str:
        return f"{super().variant()}/{self.start_store}"

    def environment(self) -> dict:
        return {**super().environment(), "start_store": self.start_store}

    def rows(self, keys, counts, start, end) -> Batches:
        cols = {**self.syscall_columns(keys, start, end), "bucket_ns": bucket_ns(keys["slot"]), "count": counts}
        return [("syscall_latency", batch("syscall_latency", cols))]
