"""samples: CPU, throttling, memory and pids counters of every cgroup, every interval.

One row per cgroup per interval (table cgroup_samples). On cgroup2 every value
comes from the cgroup's own files; on v1 and hybrid hosts the controllers live
in separate hierarchies and are joined by relative path: cpu.stat and
cpu.cfs_{quota,period}_us from the cpu hierarchy, cpuacct.usage from cpuacct,
memory.usage_in_bytes / limit_in_bytes from memory, pids.current from pids. A
row's `hierarchy` is 'unified' on a pure v2 host, else the hierarchy holding
the cpu controller (the main one), and its cgroup_id is the inode of the
cgroup's directory there (NULL if the path exists only in other hierarchies).

Cost (5000 cgroups at 1 s must stay under 5% of a core): descriptors stay open
and are read with os.pread (fdcache.py), and reads that provably cannot return
anything new are skipped. Each skip, and why it is lossless:

1. Limits (cpu.max, cpu.cfs_quota_us, cpu.cfs_period_us, memory.max,
   memory.limit_in_bytes) change only by write(2) to that file; vfs_write()
   calls fsnotify_modify() for every successful write, so the cgroup tree's
   inotify watch on the directory sees IN_MODIFY with the file's name. The
   tree is drained synchronously right before each sample, so every write that
   completed before the sample is known. Limits are read when a cgroup appears,
   after a write to one of them, after a write to the parent's
   cgroup.subtree_control (v2 files appear), and after an inotify overflow.
2. v1 cpu.stat (nr_periods, nr_throttled, throttled_time) of a cgroup whose
   quota is unlimited (-1): these counters only move in the CFS bandwidth
   period timer and the throttle/unthrottle paths, which run only for a
   cfs_bandwidth with quota != RUNTIME_INF (kernel/sched/fair.c:
   do_sched_cfs_period_timer returns before counting when quota is
   RUNTIME_INF; throttling needs runtime_enabled). Setting the quota to -1
   unthrottles synchronously inside the write, so the file is read once more
   at the first sample after any quota write, then reused while unlimited.
   (v2 cpu.stat also holds usage_usec, so it is always read.)
3. nr_procs when pids.current read 0 in the same sample, where pids and the
   main hierarchy are one (cgroup2): pids.current counts every task of the
   subtree (charged at fork, uncharged only when a task is released, after it
   left cgroup.procs), so 0 tasks means an empty cgroup.procs.
4. On v1 hierarchies, a count that read 0 while nothing has written since to
   the cgroup.procs or tasks file it depends on: pids.current (hierarchical:
   the files of the cgroup and its descendants in the pids hierarchy) and
   nr_procs (the cgroup's own files in the main hierarchy). A task enters a v1
   cgroup only by such a write (cgroup1_procs_write / cgroup1_tasks_write,
   notified by vfs_write's fsnotify_modify like the limits of rule 1), by fork
   from a task already inside, or by cgroup_attach_task_all() from a task
   already inside (vhost); CLONE_INTO_CGROUP takes only cgroup2 directories.
   An empty cgroup therefore stays empty until such a write; exits only lower
   the counts. Not on cgroup2, where clone3(CLONE_INTO_CGROUP) enters a cgroup
   without a write. An inotify overflow clears every such skip.
v1 cgroup.procs is opened for every read, never kept: the kernel reuses the
pid list it built at the first read of an open file (fdcache.FreshFile).
Nothing else is skipped: usage and memory.current can change without any
notification (memory even without tasks: reclaim, swap-in by other tasks).
As with every inotify-based rule, "notified" means the write's syscall
returned before the drain that precedes the sample: a write still inside
write(2) at that instant (the task is attached before fsnotify_modify runs)
is seen at the next sample.
"""

from __future__ import annotations

import os

from ...schemas import batch
from ..cgroup_tree import CgroupTree, release_shared, shared_tree
from .admission import admit
from ..fdcache import FreshFile, KeptFile
from ..k8s import identity
from ..kernelfs import cgroup_files as cf
from ..kernelfs.cgroupfs import UNIFIED
from ..source import BaseSource, Batches, RecordContext, SourceUnavailable, no_hierarchy

_COLS = ("ts_ns", "hierarchy", "cgroup_path", "cgroup_id", "cpu_usage_usec", "nr_periods", "nr_throttled",
         "throttled_usec", "cpu_quota_usec", "cpu_period_usec", "memory_current", "memory_max",
         "pids_current", "nr_procs", "pod_uid", "container_id", "qos_class", "runtime")
_ATTACH_NAMES = frozenset({"cgroup.procs", "tasks"})
_CONFIG_NAMES = frozenset({"cpu.max", "cpu.cfs_quota_us", "cpu.cfs_period_us", "memory.max", "memory.limit_in_bytes"})
_NO_STAT = (None, None, None)


def _kept(path: str | None) -> KeptFile | None:
    return KeptFile(path) if path is not None else None


class _Cgroup:
    __slots__ = ("rel", "ident", "ino", "usage", "stat", "mem", "pids", "procs",
                 "quota_path", "period_path", "memmax_path", "cpu_max_path",
                 "quota", "period", "memmax", "dirty", "last_stat", "gone", "pids_zero", "procs_zero")

    def close(self) -> None:
        for kf in (self.usage, self.stat, self.mem, self.pids, self.procs):
            if kf is not None:
                kf.close()


def _read_once(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        with open(path, "rb", buffering=0) as f:
            return f.read().decode()
    except OSError:
        return None


class CgroupSamplesSource(BaseSource):
    name = "samples"
    tables = ("cgroup_samples",)
    summary = "per-cgroup CPU usage, CFS throttling, quota, memory and pids counters, every interval"
    needs = "a mounted cgroupfs with the cpu, cpuacct, memory or pids controllers (v1) or cgroup2"
    sampled = True

    def __init__(self) -> None:
        super().__init__()
        self.tree: CgroupTree | None = None
        self._cgroups: dict[str, _Cgroup] = {}
        self._order: list[_Cgroup] = []
        self._gen = -1
        self._dirty_all = False
        self._attach_writes: list[tuple[str, str]] = []  # (hierarchy, rel) of writes to cgroup.procs/tasks

    def probe(self, ctx: RecordContext) -> None:
        lay = ctx.layout
        if not lay.hierarchies:
            raise no_hierarchy(ctx.cgroup_root)

    def start(self, ctx: RecordContext) -> Batches:
        super().start(ctx)
        lay = ctx.layout
        v2 = lay.mode == "v2"
        if v2:
            self.h_cpu = self.h_acct = self.h_mem = self.h_pids = UNIFIED
        else:
            c = lay.controllers
            self.h_cpu, self.h_acct, self.h_mem, self.h_pids = c.get("cpu"), c.get("cpuacct"), c.get("memory"), c.get("pids")
        self.v2 = v2
        self.main = UNIFIED if v2 else (self.h_cpu or self.h_acct or self.h_mem or self.h_pids)
        if self.main is None:
            raise SourceUnavailable(f"no cpu, cpuacct, memory or pids hierarchy under {ctx.cgroup_root}")
        try:
            self.tree = shared_tree(ctx)
        except OSError as e:
            raise SourceUnavailable(f"inotify: {e.strerror}") from None
        self.tree.subscribe(self._on_event)
        self._hiers = {h for h in (self.h_cpu, self.h_acct, self.h_mem, self.h_pids, self.main) if h}
        # skip rules 3 and 4 (module docstring): which hold on this layout
        self._rule3 = self.h_pids is not None and self.h_pids == self.main
        self._zero_pids = self.h_pids is not None and self.h_pids != UNIFIED
        self._zero_procs = self.main != UNIFIED
        return []

    # -- tree events (under the tree lock) ------------------------------------
    def _on_event(self, ts, kind, hier, rel, name, ino, source) -> None:
        if kind == "modified":
            if name in _CONFIG_NAMES:
                cg = self._cgroups.get(rel)
                if cg is not None:
                    cg.dirty = True
            elif name in _ATTACH_NAMES:
                self._attach_writes.append((hier, rel))
            elif name == "cgroup.subtree_control":
                prefix = rel.rstrip("/") + "/"
                for r, cg in self._cgroups.items():
                    if r.startswith(prefix):
                        cg.dirty = True
        elif kind == "overflow":
            self._dirty_all = True

    # -- cgroup list -----------------------------------------------------------
    def _sync(self) -> None:
        nodes = self.tree.nodes
        rels = {r for (h, r) in nodes if h in self._hiers}
        main = self.main
        for r in [r for r, cg in self._cgroups.items()
                  if r not in rels or (cg.ino is not None and nodes.get((main, r)) != cg.ino)]:
            self._cgroups.pop(r).close()  # removed, or removed and made again (new files, new counts)
        now, more = admit(sorted(rels - self._cgroups.keys()), first=not self._cgroups)
        for r in now:
            self._cgroups[r] = self._new(r, nodes)
        self._order = [self._cgroups[r] for r in sorted(self._cgroups)]
        # the rest wait for the next sample: sync again then, whether or not the tree changed
        self._gen = -1 if more else self.tree.generation

    def _new(self, rel: str, nodes) -> _Cgroup:
        tree = self.tree

        def path(h, fname):
            return tree.path(h, rel) + "/" + fname if h and (h, rel) in nodes else None

        cg = _Cgroup()
        cg.rel, cg.ident, cg.ino = rel, tuple(identity(rel)), nodes.get((self.main, rel))
        if self.v2:
            cg.usage = None
            cg.stat = _kept(path(UNIFIED, "cpu.stat"))
            cg.mem = _kept(path(UNIFIED, "memory.current"))
            cg.cpu_max_path = path(UNIFIED, "cpu.max")
            cg.quota_path = cg.period_path = None
            cg.memmax_path = path(UNIFIED, "memory.max")
        else:
            cg.usage = _kept(path(self.h_acct, "cpuacct.usage"))
            cg.stat = _kept(path(self.h_cpu, "cpu.stat"))
            cg.mem = _kept(path(self.h_mem, "memory.usage_in_bytes"))
            cg.cpu_max_path = None
            cg.quota_path = path(self.h_cpu, "cpu.cfs_quota_us")
            cg.period_path = path(self.h_cpu, "cpu.cfs_period_us")
            cg.memmax_path = path(self.h_mem, "memory.limit_in_bytes")
        cg.pids = _kept(path(self.h_pids, "pids.current"))
        procs = path(self.main, "cgroup.procs")
        # v1 cgroup.procs is a snapshot per open file (fdcache.FreshFile): never kept open there
        cg.procs = _kept(procs) if self.v2 or procs is None or self.main == UNIFIED else FreshFile(procs)
        cg.quota = cg.period = cg.memmax = None
        cg.dirty, cg.last_stat, cg.gone = True, None, False
        cg.pids_zero = cg.procs_zero = False
        return cg

    def _read_config(self, cg: _Cgroup) -> None:
        if self.v2:
            text = _read_once(cg.cpu_max_path)
            cg.quota, cg.period = cf.parse_cpu_max(text) if text is not None else (None, None)
        else:
            t = _read_once(cg.quota_path)
            cg.quota = cf.parse_cfs_quota(t) if t is not None else None
            t = _read_once(cg.period_path)
            cg.period = cf.parse_int(t) if t is not None else None
        t = _read_once(cg.memmax_path)
        cg.memmax = cf.parse_memory_limit(t) if t is not None else None
        cg.dirty = False

    # -- sampling --------------------------------------------------------------
    def poll(self, now_ns: int) -> Batches:
        if not self.due(now_ns):
            return []
        return self.counted(self.sample())

    def sample(self) -> Batches:
        order = self._prepare()
        clock = self.ctx.clock
        read = self._read
        rows = []
        append = rows.append
        for cg in order:
            ts = clock()
            try:
                append(read(cg, ts))
            except (OSError, ValueError):
                row = self._row_with_missing_files(cg, ts)
                if row is not None:
                    append(row)
        if not rows:
            return []
        cols = dict(zip(_COLS, map(list, zip(*rows))))
        return [("cgroup_samples", batch("cgroup_samples", cols))]

    def _prepare(self) -> list[_Cgroup]:
        """The cgroups to sample, with every notified write applied to their skip state."""
        tree = self.tree
        tree.drain()  # every write completed before this point is now known (skip rule 1)
        with tree.locked():  # the listener marks dirty flags under this lock
            if tree.generation != self._gen:
                self._sync()
            if self._dirty_all:
                for cg in self._order:
                    cg.dirty = True
                    cg.pids_zero = cg.procs_zero = False  # writes may have been lost
                self._dirty_all = False
                self._attach_writes.clear()
            elif self._attach_writes:
                self._apply_attach_writes()
            return list(self._order)

    def _read(self, cg: _Cgroup, ts: int) -> tuple:
        """One row of a cgroup; OSError/ValueError when a file is missing or the cgroup went away."""
        dirty = cg.dirty
        if dirty:
            self._read_config(cg)
        usage, stat = self._read_cpu(cg, dirty)
        m = cg.mem
        mem = int(m.read(64)) if m is not None else None
        p = cg.pids
        if p is None:
            pids = None
        elif cg.pids_zero:
            pids = 0  # skip rule 4
        else:
            pids = int(p.read(64))
            if pids == 0 and self._zero_pids:
                cg.pids_zero = True
                p.close()  # not read while zero: the fd budget goes to the files read every time
        pr = cg.procs
        if pr is None:
            nprocs = None
        elif cg.procs_zero or (pids == 0 and self._rule3):
            nprocs = 0  # skip rules 4 and 3
        else:
            nprocs = cf.count_procs(pr.read())
            if nprocs == 0 and self._zero_procs:
                cg.procs_zero = True
                pr.close()
        return (ts, self.main, cg.rel, cg.ino, usage, *stat, cg.quota, cg.period, mem, cg.memmax, pids, nprocs,
                *cg.ident)

    def _read_cpu(self, cg: _Cgroup, dirty: bool) -> tuple[int | None, tuple]:
        """(usage in usec, (nr_periods, nr_throttled, throttled_usec))."""
        st = cg.stat
        if self.v2:
            if st is None:
                return None, _NO_STAT
            s = cf.parse_cpu_stat(st.read().decode())
            return s["cpu_usage_usec"], (s["nr_periods"], s["nr_throttled"], s["throttled_usec"])
        u = cg.usage
        usage = int(u.read(64)) // 1000 if u is not None else None
        if st is None:
            return usage, _NO_STAT
        if cg.quota is None and not dirty and cg.last_stat is not None:
            return usage, cg.last_stat  # skip rule 2: unlimited, counters frozen
        s = cf.parse_cpu_stat(st.read().decode())
        stat = cg.last_stat = (s["nr_periods"], s["nr_throttled"], s["throttled_usec"])
        if cg.quota is None:
            st.close()  # not read again while unlimited: keep the fd budget for hot files
        return usage, stat

    def _apply_attach_writes(self) -> None:
        """A write to cgroup.procs/tasks may have moved tasks in: re-read the counts it can change."""
        cgroups = self._cgroups
        for hier, rel in self._attach_writes:
            if hier == self.h_pids:
                r = rel  # pids.current is hierarchical: this cgroup and every ancestor
                while True:
                    cg = cgroups.get(r)
                    if cg is not None:
                        cg.pids_zero = False
                    if r == "/":
                        break
                    r = r.rsplit("/", 1)[0] or "/"
            if hier == self.main:
                cg = cgroups.get(rel)
                if cg is not None:
                    cg.procs_zero = False
        self._attach_writes.clear()

    def _row_with_missing_files(self, cg: _Cgroup, ts: int) -> tuple | None:
        """The slow path after a failed read: a cgroup that still exists but lacks a file.

        The kernel omits files on the root cgroup (memory.current, pids.current,
        cpu.max are CFTYPE_NOT_ON_ROOT) and in cgroups whose parent did not enable
        the controller; those values are NULL. A cgroup removed since the last
        drain yields no row (its `removed` event comes with the next drain).
        """
        def opt(kf: KeptFile | None, parse):
            if kf is None:
                return None
            try:
                return parse(kf.read())
            except (OSError, ValueError):
                return None

        if self.v2:
            s = opt(cg.stat, lambda b: cf.parse_cpu_stat(b.decode()))
            usage = s["cpu_usage_usec"] if s else None
            stat = (s["nr_periods"], s["nr_throttled"], s["throttled_usec"]) if s else _NO_STAT
        else:
            usage = opt(cg.usage, lambda b: cf.cpuacct_usage_usec(b.decode()))
            s = opt(cg.stat, lambda b: cf.parse_cpu_stat(b.decode()))
            stat = (s["nr_periods"], s["nr_throttled"], s["throttled_usec"]) if s else _NO_STAT
        mem = opt(cg.mem, lambda b: cf.parse_int(b.decode()))
        pids = opt(cg.pids, lambda b: cf.parse_int(b.decode()))
        nprocs = 0 if (pids == 0 and self._rule3) else opt(cg.procs, cf.count_procs)
        # checked after the reads: a file missing while the directory still exists is absent, not removed
        if not any(os.path.isdir(self.tree.path(h, cg.rel)) for h in self._hiers):
            return None
        return (ts, self.main, cg.rel, cg.ino, usage, *stat, cg.quota, cg.period, mem, cg.memmax, pids, nprocs,
                *cg.ident)

    def stop(self) -> Batches:
        for cg in self._cgroups.values():
            cg.close()
        self._cgroups.clear()
        if self.tree is not None:
            release_shared(self.ctx, self.tree)
        return []
