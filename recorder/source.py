"""The Source protocol: what the recorder loop knows about a source, and nothing more.

A source is constructed with the recording context, asked whether it can run
(`probe`), started, polled on every tick of the loop (returning Arrow batches
for its tables), and stopped (returning its last batches). It counts what it
produced and lost in `stats`. Sources that cannot run raise SourceUnavailable
with a reason a user can act on; the loop records it and goes on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import ClassVar, Protocol

import pyarrow as pa

from nodetape.core.clock import boottime_ns
from nodetape.core.errors import SourceUnavailable
from .kernelfs.cgroupfs import CgroupLayout, detect_layout

Batches = list[tuple[str, pa.RecordBatch]]


@dataclass
class RecordContext:
    """Everything a source may know about the recording, injectable for tests."""

    cgroup_root: Path = Path("/sys/fs/cgroup")
    proc_root: Path = Path("/proc")
    sys_root: Path = Path("/sys")
    interval_ns: int = 1_000_000_000
    # free-form options of individual sources (psi_triggers, cgroup_globs, ...)
    options: dict = field(default_factory=dict)
    own_pid: int = field(default_factory=os.getpid)
    clock: callable = boottime_ns
    # shared facts found by one source and used by others (e.g. cgroup id -> path)
    shared: dict = field(default_factory=dict)
    # wakes the recorder loop from any thread (a source's reader has rows); the loop sets it
    wake: Callable[[], None] = field(default=lambda: None, repr=False)
    _layout: CgroupLayout | None = None

    @property
    def layout(self) -> CgroupLayout:
        if self._layout is None:
            self._layout = detect_layout(self.cgroup_root)
        return self._layout


@dataclass
class SourceStats:
    events: int = 0
    dropped: int = 0
    drop_reason: str | None = None
    lag_ns: int = 0
    # dropped split by reason ({'ringbuf_full': n, ...}) where the source counts them apart
    drops_by_reason: dict[str, int] = field(default_factory=dict)


# next_poll_ns of a source that only a wake-up (its wait_fds, ctx.wake) makes due
NEVER = 1 << 62


class Source(Protocol):
    name: ClassVar[str]
    tables: ClassVar[tuple[str, ...]]
    # one line for `nodetape doctor` and the docs
    summary: ClassVar[str]
    # what the source needs, shown by doctor when it is unavailable
    needs: ClassVar[str]

    stats: SourceStats

    def probe(self, ctx: RecordContext) -> None:
        """Raise SourceUnavailable(reason) when the source cannot run here. Cheap, no side effects."""

    def start(self, ctx: RecordContext) -> Batches:
        """Acquire resources (fds, BPF programs, watches); may return initial rows (snapshots)."""

    def poll(self, now_ns: int) -> Batches:
        """Return rows gathered since the last poll. Must be bounded in time."""

    def stop(self) -> Batches:
        """Release resources and return the last rows."""

    # optional: `environment() -> dict` describes what the source runs on (bcc
    # version, tracefs, kernel headers used); the loop stores it in the manifest

    # optional, for an idle recorder that sleeps (issue 15): `next_poll_ns() -> int | None`
    # is the boottime at which the source next has work (None: poll it every tick,
    # the default for a source without the method), and `wait_fds() -> list[int]` are
    # descriptors whose readability means it has something to say now. A source fed
    # by its own thread calls ctx.wake() when it has rows. The loop sleeps until the
    # earliest of these, never polling more often than its tick.


class BaseSource:
    """Convenience base: stats, no-op stop, and an interval gate for sampled sources."""

    name: ClassVar[str] = ""
    tables: ClassVar[tuple[str, ...]] = ()
    summary: ClassVar[str] = ""
    needs: ClassVar[str] = ""
    # every reason the source may count a drop under (its SourceStats.drops_by_reason keys)
    drop_reasons: ClassVar[tuple[str, ...]] = ()
    # True when poll() does work only once due(): the loop may then sleep until the next interval
    sampled: ClassVar[bool] = False

    def __init__(self) -> None:
        self.stats = SourceStats()
        self._next_due_ns: int | None = None
        self.ctx: RecordContext | None = None

    def probe(self, ctx: RecordContext) -> None:
        return None

    def start(self, ctx: RecordContext) -> Batches:
        self.ctx = ctx
        return []

    def poll(self, now_ns: int) -> Batches:
        return []

    def stop(self) -> Batches:
        return []

    def next_poll_ns(self) -> int | None:
        """When the loop must poll next: the next interval for a sampled source, else every tick (None)."""
        if not self.sampled:
            return None
        return self._next_due_ns if self._next_due_ns is not None else 0

    def due(self, now_ns: int) -> bool:
        """True once per interval; records how late the tick came (lag_ns)."""
        assert self.ctx is not None
        if self._next_due_ns is None:
            self._next_due_ns = now_ns
        if now_ns < self._next_due_ns:
            return False
        self.stats.lag_ns = now_ns - self._next_due_ns
        # schedule from the planned time, not from now, so intervals do not drift;
        # skip whole intervals we missed rather than bursting to catch up
        missed = (now_ns - self._next_due_ns) // self.ctx.interval_ns
        self._next_due_ns += (missed + 1) * self.ctx.interval_ns
        return True

    def counted(self, batches: Batches) -> Batches:
        self.stats.events += sum(b.num_rows for _, b in batches)
        return batches


def no_hierarchy(cgroup_root) -> SourceUnavailable:
    """The reason a cgroup source cannot run on a folder without any cgroup hierarchy."""
    hint = ("is cgroupfs mounted?" if str(cgroup_root) == "/sys/fs/cgroup" else
            "to re-enact a tape there, make its layout first: nodetape replay TAPE --into DIR --prepare")
    return SourceUnavailable(f"no cgroup hierarchy found under {cgroup_root} ({hint})")
