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
and are read with os.pread (fdcache.py), parsed as bytes, the batch is built
column-wise with the columns fixed by the cgroup kept while the cgroup set
holds (columns.py), and reads that provably cannot return anything new are
skipped. Each skip, and why it is lossless:

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
5. A file the cgroup does not have (the root's pids.current and memory.current
   are CFTYPE_NOT_ON_ROOT; a v2 controller's files exist only where the
   parent's cgroup.subtree_control enables it): its value is NULL, and it is
   looked for again only after a write that can make it appear, the same
   notifications as rule 1 (a write to the parent's cgroup.subtree_control, or
   an overflow); a v1 hierarchy's files are fixed by its controllers at mount.
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

import pyarrow as pa

from ...schemas import batch
from ..columns import IdentityColumns, same_type
from ..cgroup_tree import CgroupTree, release_shared, shared_tree
from .admission import admit
from .sampled_cgroup import GONE, SampledCgroup, kept
from ..fdcache import FreshFile
from ..k8s import identity
from ..kernelfs import cgroup_files as cf
from ..kernelfs.cgroupfs import UNIFIED
from ..source import BaseSource, Batches, RecordContext, SourceUnavailable, no_hierarchy

# what a row reads at its sample (_read's tuple, in this order) and what its cgroup fixes (columns.py)
_READ = ("ts_ns", "cpu_usage_usec", "nr_periods", "nr_throttled", "throttled_usec", "cpu_quota_usec",
         "cpu_period_usec", "memory_current", "memory_max", "pids_current", "nr_procs")
_IDENT = ("hierarchy", "cgroup_path", "cgroup_id", "pod_uid", "container_id", "qos_class", "runtime")
_ATTACH_NAMES = frozenset({"cgroup.procs", "tasks"})
_CONFIG_NAMES = frozenset({"cpu.max", "cpu.cfs_quota_us", "cpu.cfs_period_us", "memory.max", "memory.limit_in_bytes"})
_NO_STAT = (None, None, None)


class CgroupSamplesSource(BaseSource):
    name = "samples"
    tables = ("cgroup_samples",)
    summary = "per-cgroup CPU usage, CFS throttling, quota, memory and pids counters, every interval"
    needs = "a mounted cgroupfs with the cpu, cpuacct, memory or pids controllers (v1) or cgroup2"
    sampled = True

    def __init__(self) -> None:
        super().__init__()
        self.tree: CgroupTree | None = None
        self._cgroups: dict[str, SampledCgroup] = {}
        self._order: list[SampledCgroup] = []
        self._gen = -1
        self._dirty_all = False
        self._attach_writes: list[tuple[str, str]] = []  # (hierarchy, rel) of writes to cgroup.procs/tasks
        self._ident = IdentityColumns("cgroup_samples", _IDENT)

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

    def _new(self, rel: str, nodes) -> SampledCgroup:
        tree = self.tree

        def path(h, fname):
            return tree.path(h, rel) + "/" + fname if h and (h, rel) in nodes else None

        cg = SampledCgroup()
        cg.rel, cg.ident, cg.ino = rel, tuple(identity(rel)), nodes.get((self.main, rel))
        if self.v2:
            cg.usage = None
            cg.stat = kept(path(UNIFIED, "cpu.stat"))
            cg.mem = kept(path(UNIFIED, "memory.current"))
            cg.cpu_max_path = path(UNIFIED, "cpu.max")
            cg.quota_path = cg.period_path = None
            cg.memmax_path = path(UNIFIED, "memory.max")
        else:
            cg.usage = kept(path(self.h_acct, "cpuacct.usage"))
            cg.stat = kept(path(self.h_cpu, "cpu.stat"))
            cg.mem = kept(path(self.h_mem, "memory.usage_in_bytes"))
            cg.cpu_max_path = None
            cg.quota_path = path(self.h_cpu, "cpu.cfs_quota_us")
            cg.period_path = path(self.h_cpu, "cpu.cfs_period_us")
            cg.memmax_path = path(self.h_mem, "memory.limit_in_bytes")
        cg.pids = kept(path(self.h_pids, "pids.current"))
        procs = path(self.main, "cgroup.procs")
        # v1 cgroup.procs is a snapshot per open file (fdcache.FreshFile): never kept open there
        cg.procs = kept(procs) if self.v2 or procs is None or self.main == UNIFIED else FreshFile(procs)
        cg.quota = cg.period = cg.memmax = None
        cg.dirty, cg.last_stat, cg.gone = True, None, False
        cg.pids_zero = cg.procs_zero = False
        cg.absent = {}
        return cg

    # -- sampling --------------------------------------------------------------
    def poll(self, now_ns: int) -> Batches:
        if not self.due(now_ns):
            return []
        return self.counted(self.sample())

    def sample(self) -> Batches:
        order = self._prepare()
        clock = self.ctx.clock
        read = self._read
        rows, cgs = [], []  # a row and its cgroup (every cgroup but one removed since the drain)
        for cg in order:
            ts = clock()
            try:
                row = read(cg, ts)
            except (OSError, ValueError):
                row = self._row_with_missing_files(cg, ts)
                if row is None:
                    continue
            rows.append(row)
            cgs.append(cg)
        if not rows:
            return []
        return [("cgroup_samples", self._batch(rows, cgs))]

    def _batch(self, rows: list[tuple], cgs: list[SampledCgroup]) -> pa.RecordBatch:
        """The batch of one sample: read columns in one conversion, identity columns kept (columns.py)."""
        def ident_values():
            return ([self.main] * len(cgs), [cg.rel for cg in cgs], [cg.ino for cg in cgs],
                    *zip(*(cg.ident for cg in cgs)))

        cols = dict(zip(_READ, same_type(list(zip(*rows)), pa.int64())))
        cols.update(zip(_IDENT, self._ident.get(cgs, ident_values)))
        return batch("cgroup_samples", cols)

    def _prepare(self) -> list[SampledCgroup]:
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

    def _read(self, cg: SampledCgroup, ts: int) -> tuple:
        """One row of a cgroup; OSError/ValueError when a file is missing or the cgroup went away."""
        dirty = cg.dirty
        if dirty:
            cg.read_config(self.v2)
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
        return ts, usage, *stat, cg.quota, cg.period, mem, cg.memmax, pids, nprocs

    def _read_cpu(self, cg: SampledCgroup, dirty: bool) -> tuple[int | None, tuple]:
        """(usage in usec, (nr_periods, nr_throttled, throttled_usec))."""
        st = cg.stat
        if self.v2:
            if st is None:
                return None, _NO_STAT
            usage, *stat = cf.cpu_stat_values(st.read())
            return usage, stat
        u = cg.usage
        usage = int(u.read(64)) // 1000 if u is not None else None
        if st is None:
            return usage, _NO_STAT
        if cg.quota is None and not dirty and cg.last_stat is not None:
            return usage, cg.last_stat  # skip rule 2: unlimited, counters frozen
        stat = cg.last_stat = cf.cpu_stat_values(st.read())[1:]
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

    def _row_with_missing_files(self, cg: SampledCgroup, ts: int) -> tuple | None:
        """The slow path after a failed read: a cgroup that still exists but lacks a file.

        The kernel omits files on the root cgroup (memory.current, pids.current,
        cpu.max are CFTYPE_NOT_ON_ROOT) and in cgroups whose parent did not enable
        the controller; those values are NULL. A cgroup removed since the last
        drain yields no row (its `removed` event comes with the next drain).
        """
        absent = []

        def opt(name: str, parse):
            kf = getattr(cg, name)
            if kf is None:
                return None
            try:
                return parse(kf.read())
            except OSError as e:
                if e.errno in GONE:
                    absent.append(name)
                return None
            except ValueError:
                return None

        usage = opt("usage", lambda b: cf.cpuacct_usage_usec(b.decode()))
        stat = opt("stat", cf.cpu_stat_values) or (None, *_NO_STAT)
        if self.v2:
            usage = stat[0]
        mem = opt("mem", lambda b: cf.parse_int(b.decode()))
        pids = opt("pids", lambda b: cf.parse_int(b.decode()))
        nprocs = 0 if (pids == 0 and self._rule3) else opt("procs", cf.count_procs)
        # checked after the reads: a file missing while the directory still exists is absent, not removed
        if not any(os.path.isdir(self.tree.path(h, cg.rel)) for h in self._hiers):
            return None
        for name in absent:  # skip rule 5: not looked for again until a write can make it appear
            cg.absent[name] = getattr(cg, name)
            setattr(cg, name, None)
        return ts, usage, *stat[1:], cg.quota, cg.period, mem, cg.memmax, pids, nprocs

    def stop(self) -> Batches:
        for cg in self._cgroups.values():
            cg.close()
        self._cgroups.clear()
        if self.tree is not None:
            release_shared(self.ctx, self.tree)
        return []
