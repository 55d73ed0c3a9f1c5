"""cgroup: the lifecycle of every cgroup, from inotify on cgroupfs.

Rows (table cgroup_events):
- `seen` (source 'scan') for every cgroup that exists at start, so a tape
  describes its whole tree, and for cgroups found by a rescan after an
  inotify queue overflow;
- `created` / `removed` (source 'inotify') for directories of every hierarchy;
- `populated` / `unpopulated`, `frozen` / `thawed` from changes of cgroup2
  `cgroup.events` (a kernfs "notify" file: the kernel sends IN_MODIFY);
- on v1, which has no cgroup.events, `populated` / `unpopulated` of cgroups
  that exist only in v1 (no cgroup2 twin at the same path), in one v1
  hierarchy (cpu's, else the first): a write to its `cgroup.procs` or `tasks`
  (IN_MODIFY, source 'inotify') re-reads it, and while populated it is
  re-read every interval (source 'poll'), since an exit notifies nothing;
- `oom`, `oom_kill`, `memory_high`, `memory_max` from growth of cgroup2
  `memory.events` counters (count = growth since the previous read), and
  `oom_kill` from the v1 `memory.oom_control` counter, which has no inotify
  notification: it is re-read every interval, unless no OOM kill happened anywhere
  since the last round began and no cgroup came or went (the kernel counts every kill
  in /proc/vmstat's oom_kill as it counts it in the cgroup's, mm/oom_kill.c; used on
  the host's /sys/fs/cgroup and /proc only, one pread of a kept descriptor).

Events are handled on a reader thread as they arrive, so `cgroup.events` is
read right after the kernel changes it and ts_ns is within milliseconds of the
change. Rows of one burst keep the kernel's queue order (seq).

Every poll is bounded (DESIGN.md principle 4): it returns at most
_MAX_ROWS_PER_POLL rows (the rest, in order, at the next tick) and re-reads v1
`memory.oom_control` and `cgroup.procs` for at most _REREAD_BUDGET_NS (a round over thousands of
memory cgroups goes on at the next tick), taking the tree's lock only a slice
at a time. Memory is bounded by back-pressure: with _MAX_PENDING rows waiting,
the tree handles no more events, they wait in the kernel queue, and if that
overflows the rescan after it reports what was missed (counted as
'inotify_overflow'). Rows beyond twice that bound (one event can add a
subtree) are dropped and counted ('pending_rows_full'), and a rescan then
reports every cgroup still present as `seen`.

A cgroup made and removed inside a cgroup that was itself removed before its
watch could be added is never known to inotify (the `cgroup-tp` eBPF source
sees those); when a created cgroup is already gone, this is counted as
'unwatched_subtree' in dropped: its subtree, if it had one, is unknown.
"""

from __future__ import annotations

import threading
import time

from ...schemas import batch
from ..cgroup_tree import CgroupTree, release_shared, shared_tree
from ..fdcache import KeptFile
from ..k8s import identity
from ..kernelfs.cgroup_files import parse_flat_keyed
from ..kernelfs.cgroupfs import UNIFIED
from ..kernelfs.procfs import vmstat_counter
from ..source import BaseSource, Batches, RecordContext, SourceUnavailable, no_hierarchy

_COLS = ("ts_ns", "source", "kind", "hierarchy", "cgroup_path", "cgroup_id", "count",
         "pod_uid", "container_id", "qos_class", "runtime")
_MEMORY_EVENTS = (("oom", "oom"), ("oom_kill", "oom_kill"), ("high", "memory_high"), ("max", "memory_max"))
# bound on rows held between polls: beyond it rows are counted as dropped, never kept without limit
_MAX_PENDING = 200_000
# rows returned by one poll: building the batch costs about 1 us per row here (50k rows: 47 ms)
_MAX_ROWS_PER_POLL = 50_000
# time one poll may spend re-reading v1 memory.oom_control or cgroup.procs (a round resumes at the next tick)
_REREAD_BUDGET_NS = 10_000_000
# how long stop() goes on handling queued events
_STOP_DRAIN_NS = 2_000_000_000


def _read(path: str) -> dict[str, int] | None:
    try:
        with open(path, "rb", buffering=0) as f:
            return parse_flat_keyed(f.read().decode())
    except OSError:
        return None


class CgroupInotifySource(BaseSource):
    name = "cgroup"
    tables = ("cgroup_events",)
    drop_reasons = ("inotify_overflow", "pending_rows_full")
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
        self._drops: dict[str, int] = {}  # reason -> count (stats.dropped is their sum)
        self._resnap = False  # rows were dropped: report every cgroup as seen by a rescan
        self._resnap_until: int | None = None  # while set, the rescan under way reports each cgroup as seen
        self._oom_files: dict[tuple[str, str], KeptFile] = {}
        self._oom_raw: dict[tuple[str, str], bytes] = {}  # what each oom_control read last (unchanged: not parsed)
        self._oom_round: list[tuple[str, str]] = []  # v1 memory cgroups still to re-read this round
        self._vmstat: KeptFile | None = None  # /proc/vmstat, whose oom_kill says whether a round can change anything
        self._oom_seen: tuple[int, int] | None = None  # (oom kills, tree generation) when the last round began
        self._v1_main: str | None = None  # the v1 hierarchy whose cgroups get populated rows
        self._v1_populated: dict[str, bool] = {}  # rel -> populated, for v1-only cgroups
        self._procs_round: list[str] = []  # populated v1 cgroups still to re-read this round

    def probe(self, ctx: RecordContext) -> None:
        if not ctx.layout.hierarchies:
            raise no_hierarchy(ctx.cgroup_root)

    def start(self, ctx: RecordContext) -> Batches:
        super().start(ctx)
        try:
            self.tree = shared_tree(ctx)
        except OSError as e:
            raise SourceUnavailable(f"inotify: {e.strerror}") from None
        h = ctx.layout.controllers.get("memory")
        self._v1_memory = h if h and h != UNIFIED else None
        if self._v1_memory and str(ctx.cgroup_root) == "/sys/fs/cgroup" and str(ctx.proc_root) == "/proc":
            self._vmstat = KeptFile("/proc/vmstat")
        v1 = [n for n in ctx.layout.hierarchies if n != UNIFIED]
        cpu = ctx.layout.controllers.get("cpu")
        self._v1_main = cpu if cpu in v1 else (sorted(v1)[0] if v1 else None)
        ts = ctx.clock()
        with self.tree.locked():  # snapshot and subscription must be atomic
            nodes = self.tree.subscribe(self._on_event)
            self.tree.add_backpressure(self._full)
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
        if self._v1_tracked(hier, rel):
            self._v1_populated[rel] = False
            self._check_procs(None, "scan", hier, rel, None, emit=False)

    def _check_events(self, ts: int, source: str, hier: str, rel: str, ino) -> None:
        new = _read(self.tree.path(hier, rel) + "/cgroup.events")
        if new is None:
            return
        old = self._events_state.get((hier, rel), {"populated": 0, "frozen": 0})
        for key, on, off in (("populated", "populated", "unpopulated"), ("frozen", "frozen", "thawed")):
            if key in new and new[key] != old.get(key, 0):
                self._row(ts, source, on if new[key] else off, hier, rel, ino)
        self._events_state[(hier, rel)] = new

    def _v1_tracked(self, hier: str, rel: str) -> bool:
        # a cgroup2 twin already says populated/unpopulated through cgroup.events
        return hier == self._v1_main and (UNIFIED, rel) not in self.tree.nodes

    def _check_procs(self, ts: int | None, source: str, hier: str, rel: str, ino, emit: bool = True) -> None:
        """v1: populated when cgroup.procs lists a process; a row when that changed."""
        try:
            with open(self.tree.path(hier, rel) + "/cgroup.procs", "rb", buffering=0) as f:
                now = bool(f.read(16).strip())
        except OSError:
            return  # removed: its removal row comes from inotify
        if emit and now != self._v1_populated.get(rel, False):
            self._row(ts, source, "populated" if now else "unpopulated", hier, rel, ino)
        self._v1_populated[rel] = now

    def _check_memory(self, ts: int, source: str, hier: str, rel: str, ino, fname: str) -> None:
        if fname == "memory.oom_control":
            kf = self._oom_files.get((hier, rel))
            if kf is None:
                kf = self._oom_files[(hier, rel)] = KeptFile(self.tree.path(hier, rel) + "/" + fname)
            try:
                raw = kf.read()
            except OSError:
                return
            if raw == self._oom_raw.get((hier, rel)):
                return  # the same bytes as at the last read: no counter grew
            self._oom_raw[(hier, rel)] = raw
            new = parse_flat_keyed(raw.decode())
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
            elif name in ("cgroup.procs", "tasks") and self._v1_tracked(hier, rel):
                self._check_procs(ts, source, hier, rel, ino)
        elif kind == "created" or kind == "seen":
            self._row(ts, source, kind, hier, rel, ino)
            if ino is None and kind == "created":
                # gone before it could be watched: cgroups made inside it, if any, are unknown
                self._drop("unwatched_subtree")
            # a new cgroup starts unpopulated with zero counters: anything else already happened
            self._events_state[(hier, rel)] = {"populated": 0, "frozen": 0}
            self._mem_state[(hier, rel)] = {}
            self._oom_raw.pop((hier, rel), None)
            if hier == UNIFIED:
                self._check_events(ts, source, hier, rel, ino)
                self._check_memory(ts, source, hier, rel, ino, "memory.events")
            elif hier == self._v1_memory:
                self._check_memory(ts, source, hier, rel, ino, "memory.oom_control")
            if self._v1_tracked(hier, rel):
                self._v1_populated[rel] = False
                self._check_procs(ts, source, hier, rel, ino)
            elif hier == UNIFIED:
                self._v1_populated.pop(rel, None)  # its twin's cgroup.events speaks for it now
        elif kind == "removed":
            self._row(ts, source, kind, hier, rel, ino)
            if hier == self._v1_main:
                self._v1_populated.pop(rel, None)
            self._events_state.pop((hier, rel), None)
            self._mem_state.pop((hier, rel), None)
            kf = self._oom_files.pop((hier, rel), None)
            if kf is not None:
                kf.close()
            self._oom_raw.pop((hier, rel), None)
        elif kind == "rescanned":
            # a rescan (after lost events) visits each known cgroup once, a step per drain:
            # re-read what it tracks then, not all at once under the lock
            if self._resnap_until is not None:
                self._row(ts, "scan", "seen", hier, rel, ino)
            if hier == UNIFIED:
                self._check_events(ts, "scan", hier, rel, ino)
                self._check_memory(ts, "scan", hier, rel, ino, "memory.events")
            elif self._v1_tracked(hier, rel):
                self._check_procs(ts, "scan", hier, rel, ino)
        elif kind == "overflow":
            self._drop("inotify_overflow")

    def _full(self) -> bool:
        return len(self._rows["ts_ns"]) >= _MAX_PENDING

    def _drop(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self._drops[reason] = self._drops.get(reason, 0) + n
            self.stats.dropped = sum(self._drops.values())
            self.stats.drop_reason = ",".join(sorted(self._drops))
            self.stats.drops_by_reason = dict(self._drops)

    def _row(self, ts, source, kind, hier, rel, ino, count=None) -> None:
        with self._lock:
            rows = self._rows
            if len(rows["ts_ns"]) >= 2 * _MAX_PENDING:
                self._drops["pending_rows_full"] = self._drops.get("pending_rows_full", 0) + 1
                self.stats.dropped = sum(self._drops.values())
                self.stats.drop_reason = ",".join(sorted(self._drops))
                self.stats.drops_by_reason = dict(self._drops)
                self._resnap = True
                return
            if not rows["ts_ns"] and self.ctx is not None:
                self.ctx.wake()  # the first row since the last poll: the loop takes it at its next tick
            ident = identity(rel)
            for k, v in (("ts_ns", ts), ("source", source), ("kind", kind), ("hierarchy", hier),
                         ("cgroup_path", rel), ("cgroup_id", ino), ("count", count),
                         ("pod_uid", ident.pod_uid), ("container_id", ident.container_id),
                         ("qos_class", ident.qos_class), ("runtime", ident.runtime)):
                rows[k].append(v)

    def _take(self, limit: int | None = None) -> Batches:
        with self._lock:
            rows = self._rows
            if limit is not None and len(rows["ts_ns"]) > limit:
                self._rows = {k: v[limit:] for k, v in rows.items()}
                rows = {k: v[:limit] for k, v in rows.items()}
            else:
                self._rows = {k: [] for k in _COLS}
        if not rows["ts_ns"]:
            return []
        return self.counted([("cgroup_events", batch("cgroup_events", rows))])

    # -- loop ------------------------------------------------------------------
    def next_poll_ns(self) -> int | None:
        """At the next tick while rows or re-read rounds wait, else at the next interval."""
        if self._rows["ts_ns"] or self._oom_round or self._procs_round or self._resnap or self._next_due_ns is None:
            return 0
        return self._next_due_ns

    def poll(self, now_ns: int) -> Batches:
        due = self.due(now_ns)
        if self._v1_memory and (self._oom_round or due):
            self._poll_v1_oom()
        if self._v1_main and (self._procs_round or due):
            self._poll_v1_procs()
        tree = self.tree
        if self._resnap_until is not None and tree.rescans_done > self._resnap_until:
            self._resnap_until = None
        if self._resnap and not self._full():
            # rows were dropped: once there is room again, a rescan (a step per drain,
            # on the reader thread) reports every cgroup still present as seen
            with tree.locked():
                self._resnap = False
                self._resnap_until = tree.rescans_done
                tree.request_rescan()
        return self._take(_MAX_ROWS_PER_POLL)

    def _poll_v1_oom(self) -> None:
        # v1 memory.oom_control has no inotify notification (only eventfd via
        # cgroup.event_control), so its oom_kill counter is polled each interval
        if not self._oom_round:
            kills = self._oom_kills()
            with self.tree.locked():
                seen = None if kills is None else (kills, self.tree.generation)
                if seen is not None and seen == self._oom_seen:
                    return  # no kill anywhere and the same cgroups since the last round began: nothing to read
                self._oom_seen = seen
                self._oom_round = [k for k in self._mem_state if k[0] == self._v1_memory]
            self._oom_round.reverse()  # popped from the end: in insertion order

        def check(ts, key):
            if key in self._mem_state and key in self.tree.nodes:
                self._check_memory(ts, "inotify", key[0], key[1], self.tree.nodes.get(key), "memory.oom_control")

        self._reread(self._oom_round, check)

    def _oom_kills(self) -> int | None:
        """The kernel's count of OOM kills so far (/proc/vmstat), None where it is not used or unknown."""
        if self._vmstat is None:
            return None
        try:
            return vmstat_counter(self._vmstat.read(16384), b"oom_kill")
        except OSError:
            return None

    def _poll_v1_procs(self) -> None:
        # a process that exits notifies nothing on v1: populated v1-only cgroups are re-read each interval
        if not self._procs_round:
            with self.tree.locked():
                self._procs_round = [r for r, on in self._v1_populated.items() if on]

        def check(ts, rel):
            key = (self._v1_main, rel)
            if self._v1_populated.get(rel) and key in self.tree.nodes:
                self._check_procs(ts, "poll", key[0], rel, self.tree.nodes.get(key))

        self._reread(self._procs_round, check)

    def _reread(self, todo: list, check) -> None:
        """check(ts, item) for items popped from `todo`, for at most _REREAD_BUDGET_NS: with
        thousands of cgroups a round spans ticks. The tree's lock is taken a slice at a time,
        so the reader thread's drain goes on in between."""
        deadline = time.monotonic_ns() + _REREAD_BUDGET_NS
        while todo and time.monotonic_ns() < deadline:
            with self.tree.locked():
                ts = self.ctx.clock()
                for _ in range(min(64, len(todo))):
                    check(ts, todo.pop())

    def stop(self) -> Batches:
        out: Batches = []
        if self.tree is not None:
            # what is queued at the end still goes in the tape, within a bound
            deadline = time.monotonic_ns() + _STOP_DRAIN_NS
            while time.monotonic_ns() < deadline:
                out += self._take()  # room for more rows: releases the back-pressure
                self.tree.drain()
                if not self.tree.backlog() and not self._full():
                    break
            # no more rows are taken: neither called nor holding the tree back any more
            self.tree.unsubscribe(self._on_event, self._full)
            release_shared(self.ctx, self.tree)
        if self._vmstat is not None:
            self._vmstat.close()
        for kf in self._oom_files.values():
            kf.close()
        self._oom_files.clear()
        return out + self._take()
