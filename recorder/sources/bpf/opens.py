"""opens: open/openat/openat2 with path, flags and result (file_opens), filtered, rate-bounded.

Opens are frequent, so by default only tasks in Kubernetes cgroups (cgroup2
paths matching *kubepods*) are traced; options['cgroup_globs'] (the CLI's
--cgroup) replaces that filter, and '*' traces everything. The filter is a
kernel hash of allowed cgroup2 ids, refreshed every interval from the tree.
A per-CPU token bucket bounds the rate in the kernel (options['opens_rate'],
events/s for the whole node, default 10000; 0 disables it); what it refuses is
counted as rate_limit drops, what the ring cannot hold as ringbuf_full.
"""

from __future__ import annotations

import ctypes
import fnmatch
import os

import numpy as np

from ....schemas import batch
from ...source import Batches, RecordContext
from . import shared_resolver
from .stream import RawStreamSource, arrow_cols, cstr

PATH_LEN = 256
RECORD = np.dtype([
    ("ts", "<u8"), ("cgid", "<u8"), ("pid", "<i4"), ("tgid", "<i4"), ("flags", "<i4"), ("ret", "<i4"),
    ("comm", "S16"), ("path", f"S{PATH_LEN}"),
])
DEFAULT_GLOBS = ("*kubepods*",)
DEFAULT_RATE = 10_000
MAX_CGROUPS = 16384


def parse_globs(value) -> list[str]:
    if value is None:
        return list(DEFAULT_GLOBS)
    if isinstance(value, str):
        value = value.split(",")
    return [g.strip() for g in value if g and g.strip()]


def matching_ids(paths: dict[int, str], globs: list[str]) -> set[int]:
    """cgroup ids whose path, or an ancestor's, matches one of the globs."""
    matched_paths = [p for p in paths.values() if any(fnmatch.fnmatchcase(p, g) for g in globs)]
    prefixes = tuple(p.rstrip("/") + "/" for p in matched_paths)
    roots = set(matched_paths)
    return {i for i, p in paths.items() if p in roots or (prefixes and p.startswith(prefixes))}


class FileOpensSource(RawStreamSource):
    name = "opens"
    tables = ("file_opens",)
    summary = "open/openat/openat2 with path, flags and result, for Kubernetes (or --cgroup) cgroups, rate-bounded"
    program = "opens.bpf.c"
    tracepoints = ("syscalls:sys_enter_openat", "syscalls:sys_exit_openat", "syscalls:sys_enter_openat2",
                   "syscalls:sys_exit_openat2", "syscalls:sys_enter_open", "syscalls:sys_exit_open")
    record = RECORD
    ringbuf_pages = 512

    def cflags(self, ctx: RecordContext) -> list[str]:
        self.globs = parse_globs(ctx.options.get("cgroup_globs"))
        self.filter_all = any(g in ("*", "/*", "/**") for g in self.globs)
        rate = int(ctx.options.get("opens_rate", DEFAULT_RATE))
        flags = [*super().cflags(ctx), f"-DPATH_LEN={PATH_LEN}", f"-DMAX_CGROUPS={MAX_CGROUPS}",
                 f"-DFILTER_ALL={int(self.filter_all)}"]
        if rate > 0:
            per_cpu_ns = max(1, (os.cpu_count() or 1) * 1_000_000_000 // rate)
            # an open that passed reserves at the call's exit, which may come any time later (a
            # FIFO's open blocks): its rate drops can follow no reservation, so read them every interval
            self.rate_window_ns = 1 << 62
            # a burst of a tenth of a second of budget per CPU
            flags += [f"-DRATE_PER_CPU_NS={per_cpu_ns}ULL", f"-DRATE_BURST_NS={100_000_000}ULL"]
        return flags

    def _after_start(self, ctx: RecordContext) -> None:
        self._allowed: set[int] = set()
        self._paths_seen: dict[int, str] | None = None
        self._sync_filter()

    def _sync_filter(self) -> None:
        if self.filter_all or self.ctx.layout.v2_root is None:
            return
        res = shared_resolver(self.ctx)
        res.rescan()
        if res.paths == self._paths_seen:
            return  # the same tree: the same ids match
        self._paths_seen = dict(res.paths)
        want = matching_ids(res.paths, self.globs)
        table = self.bpf[b"allowed"]
        one = ctypes.c_uint8(1)
        for cg in want - self._allowed:
            table[ctypes.c_uint64(cg)] = one
        for cg in self._allowed - want:
            try:
                del table[ctypes.c_uint64(cg)]
            except KeyError:
                pass
        self._allowed = want

    def poll(self, now_ns: int) -> Batches:
        # the filter follows the tree once an interval, in the poll that reads the drop counters:
        # a schedule of its own woke the loop a second time every interval
        nxt = self._next_due_ns
        if self.ctx is not None and (nxt is None or now_ns >= nxt):
            self._sync_filter()
        return super().poll(now_ns)

    def decode(self, r: np.ndarray) -> Batches:
        cols = {
            "ts_ns": r["ts"].astype(np.int64),
            "pid": r["pid"],
            "tgid": r["tgid"],
            "cgroup_id": r["cgid"],
            "comm": cstr(r["comm"]),
            "path": cstr(r["path"]),
            "flags": r["flags"],
            "ret": r["ret"],
        }
        return [("file_opens", batch("file_opens", arrow_cols(cols)))]
