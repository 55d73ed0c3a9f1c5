"""psi: Pressure Stall Information sampled every interval.

System-wide from PROC/pressure/{cpu,memory,io,irq}, and every cgroup2 cgroup's
{cpu,memory,io,irq}.pressure (scope = the cgroup path relative to the cgroup2
root). Descriptors stay open and are read with os.pread (fdcache.py); cgroups
created during the recording are picked up from the shared inotify tree
(cgroup_tree.py), or, when cgroupfs cannot be watched, from a rescan each interval.
"""

from __future__ import annotations

import os

import pyarrow as pa

from ...schemas import batch
from ..cgroup_tree import release_shared, shared_tree
from ..columns import IdentityColumns, same_type
from .admission import admit
from ..fdcache import KeptFile
from ..kernelfs.cgroupfs import UNIFIED
from ..kernelfs.psi import PSI_KEYS, RESOURCES, psi_values

_FLOATS = tuple(k for k in PSI_KEYS if "avg" in k)
_INTS = ("ts_ns", *(k for k in PSI_KEYS if "avg" not in k))
from ..source import BaseSource, Batches, RecordContext, SourceUnavailable


class PsiSource(BaseSource):
    name = "psi"
    tables = ("psi_samples",)
    summary = "PSI pressure (some/full averages and totals) of the system and of cgroups, every interval"
    needs = "a kernel with CONFIG_PSI and psi not disabled on the command line (psi=1); read access to /proc/pressure"
    sampled = True

    def __init__(self) -> None:
        super().__init__()
        self._fds: list[tuple[str, str, int]] = []  # (scope, resource, fd) of the system files
        self._cg: dict[str, list[tuple[str, KeptFile]]] = {}  # rel -> [(resource, file)]
        self._tree = None
        self._gen = -1
        self._cg_files: list[tuple[str, str, KeptFile]] = []  # (rel, resource, file) in row order
        self._ident = IdentityColumns("psi_samples", ("scope", "resource"))

    def probe(self, ctx: RecordContext) -> None:
        d = ctx.proc_root / "pressure"
        if not d.is_dir():
            raise SourceUnavailable(f"{d} does not exist: kernel built without CONFIG_PSI, or booted with psi=0")
        readable = [r for r in RESOURCES if os.access(d / r, os.R_OK)]
        if not readable:
            raise SourceUnavailable(f"no readable PSI file in {d}")

    def start(self, ctx: RecordContext) -> Batches:
        super().start(ctx)
        for r in RESOURCES:
            try:
                fd = os.open(ctx.proc_root / "pressure" / r, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue  # irq pressure exists only with CONFIG_IRQ_TIME_ACCOUNTING
            self._fds.append(("system", r, fd))
        self._v2 = ctx.layout.v2_root
        if self._v2 is not None and not ctx.options.get("psi_no_cgroups"):
            try:
                self._tree = shared_tree(ctx)
            except OSError:
                self._tree = None  # no inotify: rescan each interval instead
        return []

    def _cgroup_rels(self) -> list[str]:
        if self._tree is not None:
            return sorted(r for (h, r) in list(self._tree.nodes) if h == UNIFIED)
        rels, stack = [], ["/"]
        while stack:
            r = stack.pop()
            rels.append(r)
            try:
                with os.scandir(str(self._v2) + ("" if r == "/" else r)) as it:
                    stack.extend(("" if r == "/" else r) + "/" + e.name for e in it if e.is_dir(follow_symlinks=False))
            except OSError:
                rels.pop()
        return sorted(rels)

    def _sync(self) -> None:
        if self._tree is not None:
            # drain here: with no cgroup source in the recording, nobody else reads the tree's events
            self._tree.drain()
            if self._tree.generation == self._gen:
                return
            self._gen = self._tree.generation
        rels = set(self._cgroup_rels())
        for r in [r for r in self._cg if r not in rels]:
            for _, kf in self._cg.pop(r):
                kf.close()
        now, more = admit(sorted(rels - self._cg.keys()), first=not self._cg)
        for r in now:
            base = str(self._v2) + ("" if r == "/" else r)
            files = [(res, KeptFile(f"{base}/{res}.pressure")) for res in RESOURCES if os.path.exists(f"{base}/{res}.pressure")]
            self._cg[r] = files
        if more:
            self._gen = -1  # the rest at the next sample
        self._cg_files = [(rel, res, kf) for rel in sorted(self._cg) for res, kf in self._cg[rel]]

    def poll(self, now_ns: int) -> Batches:
        if not self.due(now_ns):
            return []
        clock = self.ctx.clock
        ts, vals, keys = [], [], []  # a row's time, values, and (scope, resource, file) in row order
        for key in self._fds:
            try:
                data = os.pread(key[2], 4096, 0)
            except OSError:
                continue
            ts.append(clock())
            vals.append(psi_values(data))
            keys.append(key)
        if self._v2 is not None and not self.ctx.options.get("psi_no_cgroups"):
            self._sync()
            for key in self._cg_files:
                try:
                    data = key[2].read()
                except OSError:
                    continue  # cgroup removed; dropped from the list at the next sync
                ts.append(clock())
                vals.append(psi_values(data))
                keys.append(key)
        if not ts:
            return []
        return self.counted([("psi_samples", self._batch(ts, vals, keys))])

    def _batch(self, ts: list[int], vals: list[list], keys: list[tuple]) -> pa.RecordBatch:
        """Read columns in one conversion per type, scope and resource kept while the files are (columns.py)."""
        by_key = dict(zip(PSI_KEYS, zip(*vals)))
        cols = dict(zip(_FLOATS, same_type([by_key[k] for k in _FLOATS], pa.float64())))
        cols.update(zip(_INTS, same_type([ts, *(by_key[k] for k in _INTS[1:])], pa.int64())))
        cols.update(zip(("scope", "resource"), self._ident.get(keys, lambda: list(zip(*keys))[:2])))
        return batch("psi_samples", cols)

    def stop(self) -> Batches:
        for _, _, fd in self._fds:
            os.close(fd)
        self._fds = []
        for files in self._cg.values():
            for _, kf in files:
                kf.close()
        self._cg.clear()
        if self._tree is not None:
            release_shared(self.ctx, self._tree)
        return []
