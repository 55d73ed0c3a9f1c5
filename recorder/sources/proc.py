"""proc: processes found in cgroups (processes rows, event 'seen') and their namespaces.

At start: pid 1's namespaces (the host reference: a container's namespace
inode differs from pid 1's) and every process. Then each interval, the
processes that appeared since (a listing of PROC compared with the last one):
comm, PPid, argv[0], cgroup path and id, and the inode of each /proc/PID/ns/*.
A process that exits before it is read is simply skipped.
The listing is skipped while no pid was allocated since the last one: PROC/loadavg's
last field is the pid namespace's most recent pid (any process or thread made in it
or below moves it), one pread of a kept descriptor. That holds only where PROC is the
procfs of the recorder's own pid namespace (loadavg counts the reader's namespace), so
it is used only where PROC/self is this process; elsewhere every interval lists PROC. At most
`proc_max_per_poll` (default 500) new processes are read per interval so a
fork storm cannot stall the loop; the rest are read at the next interval.

cgroup_path is the process's cgroup in the main hierarchy (cgroup2 on a v2
host, the cpu hierarchy on v1/hybrid, like cgroup_samples), and cgroup_id is
its cgroup2 id (the inode of its cgroup2 directory, what eBPF sources record)
when a cgroup2 hierarchy is mounted, else the inode in the main hierarchy.
"""

from __future__ import annotations

import os

from ...schemas import batch
from ..kernelfs import procfs
from ..source import BaseSource, Batches, RecordContext, SourceUnavailable

_PROC_COLS = ("ts_ns", "source", "event", "pid", "tgid", "ppid", "comm", "filename", "cgroup_id", "cgroup_path")


class ProcSource(BaseSource):
    name = "proc"
    tables = ("processes", "namespaces")
    summary = "processes seen in cgroups (comm, ppid, argv0, cgroup) and their namespace inodes"
    needs = "a readable procfs (reading other users' /proc/PID/ns needs root or CAP_SYS_PTRACE)"
    sampled = True

    def __init__(self) -> None:
        super().__init__()
        self._known: set[int] = set()
        self._pending: list[int] = []
        self._names: list[str] | None = None  # the last listing of PROC
        self._loadavg = -1  # a kept descriptor of PROC/loadavg, where it tells new pids (_last_pid)
        self._last_pid: bytes | None = None

    def probe(self, ctx: RecordContext) -> None:
        if not (ctx.proc_root / "1").is_dir():
            raise SourceUnavailable(f"{ctx.proc_root} is not a mounted procfs (no {ctx.proc_root}/1)")

    def start(self, ctx: RecordContext) -> Batches:
        super().start(ctx)
        lay = ctx.layout
        self._v2 = lay.v2_root
        self._main_ctl = None if lay.mode == "v2" else next(
            (lay.hierarchies.get(lay.controllers[c]) and lay.controllers[c] for c in ("cpu", "memory", "pids") if c in lay.controllers), None)
        self._max = int(ctx.options.get("proc_max_per_poll", 500))
        self._root = str(ctx.proc_root)
        try:
            if os.readlink(f"{self._root}/self") == str(os.getpid()):
                self._loadavg = os.open(f"{self._root}/loadavg", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            pass  # not procfs of this pid namespace: the listing every interval
        ts = ctx.clock()
        # pid 1's namespaces are the host reference; where pid 1 cannot be read (a sandbox
        # denies ptrace access to it) the recorder's own namespaces are the reference
        ns_rows = [(ts, 1, t, i) for t, i in self._namespaces(1)]
        ns_rows += [(ts, ctx.own_pid, t, i) for t, i in self._namespaces(ctx.own_pid)]
        out = self._emit([], ns_rows)
        self._pending = self._list_new()
        return out + self._read_pending()

    def _no_new_pid(self) -> bool:
        """Whether no pid was allocated since the last call (False when it cannot tell)."""
        if self._loadavg < 0:
            return False
        try:
            last = os.pread(self._loadavg, 128, 0).rsplit(b" ", 1)[-1]
        except OSError:
            return False
        same, self._last_pid = last == self._last_pid, last
        return same

    def _list_new(self) -> list[int]:
        if self._no_new_pid():
            return []  # the same processes, or fewer: nothing new to read
        try:
            names = os.listdir(self._root)
        except OSError:
            return []
        if names == self._names:
            return []  # the same listing (procfs lists pids in order): no process came or went
        self._names = names
        pids = {int(n) for n in names if n.isdigit()}
        self._known &= pids  # forget exited pids, so a reused pid is seen again
        new = sorted(pids - self._known - set(self._pending))
        return new

    def _namespaces(self, pid: int) -> list[tuple[str, int]]:
        d = f"{self.ctx.proc_root}/{pid}/ns"
        out = []
        for t in procfs.NS_TYPES:
            try:
                ino = procfs.ns_inode(os.readlink(f"{d}/{t}"))
            except OSError:
                continue
            if ino is not None:
                out.append((t, ino))
        return out

    def _cgroup_of(self, pid: int) -> tuple[str | None, int | None]:
        with open(f"{self.ctx.proc_root}/{pid}/cgroup") as f:
            cg = procfs.parse_proc_cgroup(f.read())
        v2path = cg.get("")
        path = v2path
        if self._main_ctl is not None:
            for ctls, p in cg.items():
                if self._main_ctl in ctls.split(","):
                    path = p
                    break
        ino = None
        if v2path is not None and self._v2 is not None:
            ino = self._inode(str(self._v2) + ("" if v2path == "/" else v2path))
        elif path is not None and self._main_ctl is not None:
            ino = self._inode(str(self.ctx.layout.hierarchies[self._main_ctl]) + ("" if path == "/" else path))
        return path, ino

    def _inode(self, path: str) -> int | None:
        # not cached: a cgroup removed and made again at the same path has a new inode, and a
        # cache keyed by path grows with every churned cgroup; one stat per new process is cheap
        # beside the /proc files read for it
        try:
            return os.stat(path).st_ino
        except OSError:
            return None  # removed already

    def _read_pending(self) -> Batches:
        todo, self._pending = self._pending[: self._max], self._pending[self._max:]
        procs, nss = [], []
        root = self.ctx.proc_root
        for pid in todo:
            self._known.add(pid)
            ts = self.ctx.clock()
            try:
                with open(f"{root}/{pid}/status") as f:
                    st = procfs.parse_status(f.read())
                with open(f"{root}/{pid}/cmdline", "rb") as f:
                    argv0 = procfs.cmdline_argv0(f.read(4096))
                path, ino = self._cgroup_of(pid)
            except (OSError, ValueError):
                continue  # exited before we read it: not an error
            ns = self._namespaces(pid)
            ppid = st.get("PPid")
            procs.append((ts, "proc", "seen", pid, pid, int(ppid) if ppid and ppid.isdigit() else None,
                          st.get("Name"), argv0, ino, path))
            nss.extend((ts, pid, t, i) for t, i in ns)
        return self._emit(procs, nss)

    def _emit(self, procs, nss) -> Batches:
        out = []
        if procs:
            out.append(("processes", batch("processes", dict(zip(_PROC_COLS, map(list, zip(*procs)))))))
        if nss:
            out.append(("namespaces", batch("namespaces", dict(zip(("ts_ns", "pid", "ns_type", "ns_inode"), map(list, zip(*nss)))))))
        return self.counted(out)

    def poll(self, now_ns: int) -> Batches:
        if not self.due(now_ns):
            return []
        self._pending.extend(self._list_new())
        return self._read_pending() if self._pending else []

    def stop(self) -> Batches:
        if self._loadavg >= 0:
            os.close(self._loadavg)
            self._loadavg = -1
        return []
