"""psi-triggers: kernel PSI triggers, one row per firing (table psi_events).

ctx.options["psi_triggers"] is a list like ["memory some 150ms/2s"] (the CLI's
repeatable --psi-trigger). Each is registered on the system file
PROC/pressure/RESOURCE and on RESOURCE.pressure of every cgroup2 cgroup whose
path matches one of ctx.options["psi_trigger_cgroups"] (fnmatch globs on the
path relative to the cgroup2 root), the way psi.rst describes: open O_RDWR |
O_NONBLOCK, write "some 150000 2000000", poll for POLLPRI. A reader thread
blocks in poll(2), so ts_ns is taken when the kernel wakes it, and the
cumulative stall total of that kind is read from the same file right after.

Cgroups created while recording (a pod that starts after `record`) are matched
too: each poll looks at the shared inotify tree (cgroup_tree.py) when it has
changed, arms the new matches and hands their descriptors to the reader thread.
Only that thread registers, unregisters and closes descriptors, so a number is
never reused under its poll set. A removed cgroup's trigger wakes it with
POLLERR (kernfs deactivated the file); it closes that descriptor then.
"""

from __future__ import annotations

import fnmatch
import os
import select
import threading

from ...schemas import batch
from ..cgroup_tree import release_shared, shared_tree
from ..kernelfs.cgroupfs import UNIFIED
from ..kernelfs.psi import parse_psi
from ..kernelfs.psi_trigger import Trigger, parse_trigger
from ..source import NEVER, BaseSource, Batches, RecordContext, SourceUnavailable

_COLS = ("ts_ns", "scope", "resource", "kind", "stall_usec", "window_usec", "total_usec")
CAP_SYS_RESOURCE = 24
_WAKE_ADD, _WAKE_STOP = b"a", b"x"


def has_cap_sys_resource(proc_root: str = "/proc") -> bool:
    try:
        with open(f"{proc_root}/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1)
    except OSError:
        pass
    return os.geteuid() == 0


def matching(rels, globs: list[str]) -> list[str]:
    """The cgroup paths (relative to the cgroup2 root) that one of the globs names."""
    return sorted(r for r in rels if any(fnmatch.fnmatch(r, g) for g in globs))




class PsiTriggerSource(BaseSource):
    name = "psi-triggers"
    tables = ("psi_events",)
    summary = "kernel PSI triggers (--psi-trigger 'memory some 150ms/2s'), one row per firing"
    needs = "CONFIG_PSI; windows that are not a multiple of 2s need CAP_SYS_RESOURCE"

    def __init__(self) -> None:
        super().__init__()
        self._fds: dict[int, tuple[str, Trigger]] = {}  # armed descriptors; the reader thread owns them
        self._armed: dict[str, int | None] = {}  # cgroup rel -> cgroup id it was armed on
        self._handoff: list[tuple[int, str, Trigger]] = []  # armed here, not yet polled by the thread
        self._rows: list[tuple] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake_r = self._wake_w = -1
        self._tree = None
        self._gen = -1

    def _triggers(self, ctx: RecordContext) -> list[Trigger]:
        priv = has_cap_sys_resource(str(ctx.proc_root))
        return [parse_trigger(t, privileged=priv) for t in ctx.options.get("psi_triggers") or []]

    def probe(self, ctx: RecordContext) -> None:
        # bad trigger text is bad usage: ValueError propagates (the CLI maps it to exit 2)
        if not ctx.options.get("psi_triggers"):
            raise SourceUnavailable("no PSI trigger given (use --psi-trigger 'memory some 150ms/2s')")
        self._triggers(ctx)
        if not (ctx.proc_root / "pressure").is_dir():
            raise SourceUnavailable(f"{ctx.proc_root / 'pressure'} does not exist: kernel without CONFIG_PSI or psi=0")

    def _arm(self, scope: str, folder: str, suffix: str) -> list[tuple[int, str, Trigger]]:
        """Open and write every trigger on one scope's pressure files; the kernel may refuse one."""
        armed = []
        for t in self._trigger_list:
            path = f"{folder}/{t.resource}{suffix}"
            try:
                fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                continue  # no such controller file, or the cgroup is already gone
            try:
                os.write(fd, t.line())
            except OSError as e:
                os.close(fd)
                if scope == "system":
                    for a, _, _ in armed:
                        os.close(a)
                    raise ValueError(f"PSI trigger '{t.resource} {t.kind} {t.stall_us}us/{t.window_us}us' "
                                     f"rejected by the kernel on {path}: {e.strerror}") from None
                continue
            armed.append((fd, scope, t))
        return armed

    def _cgroups(self) -> dict[str, int | None]:
        """rel -> cgroup id of every cgroup2 cgroup now (the shared tree, else a walk)."""
        if self._tree is not None:
            return {r: i for (h, r), i in list(self._tree.nodes.items()) if h == UNIFIED}
        out = {}
        for dirpath, _, _ in os.walk(self._v2):
            out["/" + os.path.relpath(dirpath, self._v2) if dirpath != str(self._v2) else "/"] = None
        return out

    def _sync_cgroups(self) -> None:
        """Arm the triggers on cgroups that match a glob and are not armed yet (or were re-made)."""
        if self._tree is not None:
            self._tree.drain()  # nobody else may read the tree's events (no cgroup source)
            if self._tree.generation == self._gen:
                return
            self._gen = self._tree.generation
        now = self._cgroups()
        new = []
        for rel in matching(now, self._globs):
            if rel in self._armed and self._armed[rel] == now[rel]:
                continue
            self._armed[rel] = now[rel]
            new += self._arm(rel, str(self._v2) + ("" if rel == "/" else rel), ".pressure")
        for rel in [r for r in self._armed if r not in now]:
            del self._armed[rel]  # its descriptors are closed by the thread on POLLERR
        if new:
            with self._lock:
                self._handoff += new
            if self._thread is not None:
                os.write(self._wake_w, _WAKE_ADD)

    def start(self, ctx: RecordContext) -> Batches:
        super().start(ctx)
        self._trigger_list = self._triggers(ctx)
        self._globs = ctx.options.get("psi_trigger_cgroups") or []
        self._v2 = ctx.layout.v2_root
        self._handoff = self._arm("system", str(ctx.proc_root / "pressure"), "")
        if self._globs and self._v2 is not None:
            try:
                self._tree = shared_tree(ctx)
            except OSError:
                self._tree = None  # no inotify: the cgroup2 tree is walked at each sync instead
            self._sync_cgroups()
        if not self._handoff:
            raise SourceUnavailable("no pressure file accepted a trigger")
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="nodetape-psi-triggers", daemon=True)
        self._thread.start()
        return []

    def _take_handoff(self, p: select.poll) -> None:
        with self._lock:
            new, self._handoff = self._handoff, []
        for fd, scope, t in new:
            self._fds[fd] = (scope, t)
            p.register(fd, select.POLLPRI)

    def _run(self) -> None:
        p = select.poll()
        p.register(self._wake_r, select.POLLIN)
        self._take_handoff(p)
        while True:
            for fd, ev in p.poll():
                if fd == self._wake_r:
                    if _WAKE_STOP in os.read(self._wake_r, 512):
                        return
                    self._take_handoff(p)
                    continue
                ts = self.ctx.clock()
                scope, t = self._fds[fd]
                if ev & (select.POLLERR | select.POLLNVAL | select.POLLHUP):
                    p.unregister(fd)  # the cgroup was removed: its trigger is gone
                    del self._fds[fd]
                    os.close(fd)
                    continue
                total = None
                try:
                    total = parse_psi(os.pread(fd, 4096, 0).decode())[f"{t.kind}_total_usec"]
                except OSError:
                    pass
                with self._lock:
                    self._rows.append((ts, scope, t.resource, t.kind, t.stall_us, t.window_us, total))
                self.ctx.wake()  # the loop takes the row at its next tick, not at the next interval

    def next_poll_ns(self) -> int | None:
        if self._rows:
            return 0
        if self._globs and self._v2 is not None:
            return self._next_due_ns if self._next_due_ns is not None else 0
        return NEVER  # only when a trigger fires (the thread wakes the loop)

    def poll(self, now_ns: int) -> Batches:
        if self._globs and self._v2 is not None and self._thread is not None and self.due(now_ns):
            self._sync_cgroups()
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return []
        cols = dict(zip(_COLS, map(list, zip(*rows))))
        return self.counted([("psi_events", batch("psi_events", cols))])

    def stop(self) -> Batches:
        if self._thread is not None:
            os.write(self._wake_w, _WAKE_STOP)
            self._thread.join(5)
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._thread = None
        out = self.poll(0)
        with self._lock:
            fds = [*self._fds, *(fd for fd, _, _ in self._handoff)]
            self._fds.clear()
            self._handoff = []
        for fd in fds:
            os.close(fd)
        if self._tree is not None:
            release_shared(self.ctx, self._tree)
            self._tree = None
        return out
