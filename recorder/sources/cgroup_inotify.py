"""cgroup: the lifecycle of every cgroup, from inotify on cgroupfs.

Rows (table cgroup_events):
- `seen` (source 'scan') for every cgroup that exists at start, so a tape
  describes its whole tree, and for cgroups found by a rescan after an
  inotify queue overflow;
- `created` / `removed` (source 'inotify') for directories of every hierarchy;
- `populated` / `unpopulated`, `frozen` / `thawed` from changes of cgroup2
  `cgroup.events` (a kernfs "notify" file: the kernel sends IN_MODIFY);
- `oom`, `oom_kill`, `memory_high`, `memory_max` from growth of cgroup2
  `memory.events` counters (count = growth since the previous read), and
  `oom_kill` from the v1 `memory.oom_control` counter, which has no inotify
  notification: it is re-read every interval.

Events are handled on a reader thread as they arrive, so `cgroup.events` is
read right after the kernel changes it and ts_ns is within milliseconds of the
change. Rows of one burst keep the kernel's queue order (seq).
"""

from __future__ import annotations

import os
import threading

from ...schemas import batch
from ..cgroup_tree import CgroupTree, shared_tree
from ..fdcache import KeptFile
from ..k8s import identity
from ..kernelfs.cgroup_files import parse_flat_keyed
from ..kernelfs.cgroupfs import UNIFIED
from ..source import BaseSource, Batches, RecordContext, SourceUnavailable

_COLS = ("ts_ns", "source", "kind", "hierarchy", "cgroup_path", "cgroup_id", "count",
         "pod_uid", "container_id", "qos_class", "runtime")
_MEMORY_EVENTS = (("oom", "oom"), ("oom_kill", "oom_kill"), ("high", "memory_high"), ("max", "memory_max"))
# bound on rows held between polls: beyond it rows are counted as dropped, never kept without limit
_MAX_PENDING = 200_000


def _read(path: str) -> dict[str, int] | None:
    try:
        with open(path, "rb", buffering=0) as f:
            return parse_flat_keyed(f.read().decode())
    except OSError:
        return None


class CgroupInotifySource(BaseSource):
    name = "cgroup"
    tables = ("cgroup_events",)
    summary = "cgroup lifecycle (created, removed, populated, frozen, oom) from inotify on cgroupfs"
    needs = "a mounted cgroupfs (v1, v2 or hybrid) and inotify (fs.inotify.max_user_watches above the number of cgroups)"

    def __init__(self) -> None:
        super().__init__()
        self.tree: CgroupTree | None = None
        self._lock = threading.Lock()
        self._rows: dict[str, list] = {k: [] for k in _COLS}
        self._events_state: dict[tuple[str, str], dict[str, int]] = {}  # cgroup.events
        self._mem_state: dict[tuple[str, str], dict[str, int]] = {}  # memory.events / oom_control
        self._v1_memory: str | None = None
        self._overflow_dropped = 0
        self._oom_files: dict[tuple[str, str], KeptFile] = {}

    def probe(self, ctx: RecordContext) -> None:
        if not ctx.layout.hierarchies:
            raise SourceUnavailable(f"no cgroup hierarchy found under {ctx.cgroup_root} (is cgroupfs mounted?)")

    def start(self, ctx: RecordContext) -> Batches:
        super().start(ctx)
        try:
            self.tree = shared_tree(ctx)
        except OSError as e:
            raise SourceUnavailable(f"inotify: {e.strerror}") from None
        h = ctx.layout.controllers.get("memory")
        self._v1_memory = h if h and h != UNIFIED else None
        ts = ctx.clock()
        with self.tree._lock:  # noqa: SLF001 - snapshot and subscription must be atomic
            nodes = self.tree.subscribe(self._on_event)
            for (hier, rel), ino in sorted(nodes.items()):
                self._row(ts, "scan", "seen", hier, rel, ino)
                self._baseline(hier, rel)
        self.tree.start_thread()
        return self._take()

    # -- state of notify files -------------------------------------------------
    def _baseline(self, hier: str, rel: str) -> None:
        """Remember the current cgroup.events / memory counters, returning what changed."""
        base = self.tree.path(hier, rel)
        if hier == UNIFIED:
            ev = _read(base + "/cgroup.events")
            if ev is not None:
                self._events_state[(hier, rel)] = ev
            mem = _read(base + "/memory.events")
            if mem is not None:
                self._mem_state[(hier, rel)] = mem
        elif hier == self._v1_memory:
            oc = _read(base + "/memory.oom_control")
            if oc is not None and "oom_kill" in oc:
                self._mem_state[(hier, rel)] = oc

    def _check_events(self, ts: int, source: str, hier: str, rel: str, ino) -> None:
        new = _read(self.tree.path(hier, rel) + "/cgroup.events")
        if new is None:
            return
        old = self._events_state.get((hier, rel), {"populated": 0, "frozen": 0})
        for key, on, off in (("populated", "populated", "unpopulated"), ("frozen", "frozen", "thawed")):
            if key in new and new[key] != old.get(key, 0):
                self._row(ts, source, on if new[key] else off, hier, rel, ino)
        self._events_state[(hier, rel)] = new

    def _check_memory(self, ts: int, source: str, hier: str, rel: str, ino, fname: str) -> None:
        if fname == "memory.oom_control":
            kf = self._oom_files.get((hier, rel))
            if kf is None:
                kf = self._oom_files[(hier, rel)] = KeptFile(self.tree.path(hier, rel) + "/" + fname)
            try:
                new = parse_flat_keyed(kf.read().decode())
            except OSError:
                new = None
        else:
            new = _read(self.tree.path(hier, rel) + "/" + fname)
        if new is None:
            return
        old = self._mem_state.get((hier, rel), {})
        pairs = _MEMORY_EVENTS if fname == "memory.events" else (("oom_kill", "oom_kill"),)
        for key, kind in pairs:
            if key in new and new[key] > old.get(key, 0):
                self._row(ts, source, kind, hier, rel, ino, new[key] - old.get(key, 0))
        self._mem_state[(hier, rel)] = new

    # -- tree listener (runs on the reader thread, under the tree lock) ---------
    def _on_event(self, ts, kind, hier, rel, name, ino, source) -> None:
        if kind == "modified":
            if name == "cgroup.events":
                self._check_events(ts, source, hier, rel, ino)
            elif name == "memory.events":
                self._check_memory(ts, source, hier, rel, ino, name)
        elif kind == "created" or kind == "seen":
            self._row(ts, source, kind, hier, rel, ino)
            # a new cgroup starts unpopulated with zero counters: anything else already happened
            self._events_state[(hier, rel)] = {"populated": 0, "frozen": 0}
            self._mem_state[(hier, rel)] = {}
            if hier == UNIFIED:
                self._check_events(ts, source, hier, rel, ino)
                self._check_memory(ts, source, hier, rel, ino, "memory.events")
            elif hier == self._v1_memory:
                self._check_memory(ts, source, hier, rel, ino, "memory.oom_control")
        elif kind == "removed":
            self._row(ts, source, kind, hier, rel, ino)
            self._events_state.pop((hier, rel), None)
            self._mem_state.pop((hier, rel), None)
            kf = self._oom_files.pop((hier, rel), None)
            if kf is not None:
                kf.close()
        elif kind == "overflow":
            # events were lost: count the overflow and re-read every notify file we track
            self._overflow_dropped += 1
            self.stats.dropped = self._overflow_dropped
            self.stats.drop_reason = "inotify_overflow"
            for (h, r), ino2 in list(self.tree.nodes.items()):
                if h == UNIFIED:
                    self._check_events(ts, "scan", h, r, ino2)
                    self._check_memory(ts, "scan", h, r, ino2, "memory.events")

    def _row(self, ts, source, kind, hier, rel, ino, count=None) -> None:
        with self._lock:
            rows = self._rows
            if len(rows["ts_ns"]) >= _MAX_PENDING:
                self.stats.dropped += 1
                self.stats.drop_reason = "rate_limit"
                return
            ident = identity(rel)
            for k, v in (("ts_ns", ts), ("source", source), ("kind", kind), ("hierarchy", hier),
                         ("cgroup_path", rel), ("cgroup_id", ino), ("count", count),
                         ("pod_uid", ident.pod_uid), ("container_id", ident.container_id),
                         ("qos_class", ident.qos_class), ("runtime", ident.runtime)):
                rows[k].append(v)

    def _take(self) -> Batches:
        with self._lock:
            rows, self._rows = self._rows, {k: [] for k in _COLS}
        if not rows["ts_ns"]:
            return []
        return self.counted([("cgroup_events", batch("cgroup_events", rows))])

    # -- loop ------------------------------------------------------------------
    def poll(self, now_ns: int) -> Batches:
        if self._v1_memory and self.due(now_ns):
            self._poll_v1_oom()
        return self._take()

    def _poll_v1_oom(self) -> None:
        # v1 memory.oom_control has no inotify notification (only eventfd via
        # cgroup.event_control), so its oom_kill counter is polled each interval.
        with self.tree._lock:  # noqa: SLF001
            ts = self.ctx.clock()
            for (h, r), ino in list(self.tree.nodes.items()):
                if h == self._v1_memory and (h, r) in self._mem_state:
                    self._check_memory(ts, "inotify", h, r, ino, "memory.oom_control")

    def stop(self) -> Batches:
        for kf in self._oom_files.values():
            kf.close()
        self._oom_files.clear()
        if self.tree is not None:
            self.tree.drain()
            self.tree.release()
            if self.ctx.shared.get("cgroup_tree") is self.tree and self.tree._users <= 0:  # noqa: SLF001
                self.ctx.shared.pop("cgroup_tree", None)
        return self._take()
