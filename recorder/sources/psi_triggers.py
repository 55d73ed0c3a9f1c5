"""psi-triggers: kernel PSI triggers, one row per firing (table psi_events).

ctx.options["psi_triggers"] is a list like ["memory some 150ms/2s"] (the CLI's
repeatable --psi-trigger). Each is registered on the system file
PROC/pressure/RESOURCE and on RESOURCE.pressure of every cgroup2 cgroup whose
path matches one of ctx.options["psi_trigger_cgroups"] (fnmatch globs on the
path relative to the cgroup2 root), the way psi.rst describes: open O_RDWR |
O_NONBLOCK, write "some 150000 2000000", poll for POLLPRI. A reader thread
blocks in poll(2), so ts_ns is taken when the kernel wakes it, and the
cumulative stall total of that kind is read from the same file right after.
"""

from __future__ import annotations

import fnmatch
import os
import select
import threading

from ...schemas import batch
from ..kernelfs.psi import parse_psi
from ..kernelfs.psi_trigger import Trigger, parse_trigger
from ..source import BaseSource, Batches, RecordContext, SourceUnavailable

_COLS = ("ts_ns", "scope", "resource", "kind", "stall_usec", "window_usec", "total_usec")
CAP_SYS_RESOURCE = 24


def has_cap_sys_resource(proc_root: str = "/proc") -> bool:
    try:
        with open(f"{proc_root}/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1)
    except OSError:
        pass
    return os.geteuid() == 0


class PsiTriggerSource(BaseSource):
    name = "psi-triggers"
    tables = ("psi_events",)
    summary = "kernel PSI triggers (--psi-trigger 'memory some 150ms/2s'), one row per firing"
    needs = "CONFIG_PSI; windows that are not a multiple of 2s need CAP_SYS_RESOURCE"

    def __init__(self) -> None:
        super().__init__()
        self._fds: dict[int, tuple[str, Trigger]] = {}
        self._rows: list[tuple] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake_r = self._wake_w = -1

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

    def start(self, ctx: RecordContext) -> Batches:
        super().start(ctx)
        triggers = self._triggers(ctx)
        targets = [("system", str(ctx.proc_root / "pressure"), "")]
        globs = ctx.options.get("psi_trigger_cgroups") or []
        v2 = ctx.layout.v2_root
        if globs and v2 is not None:
            for dirpath, dirnames, _ in os.walk(v2):
                rel = "/" + os.path.relpath(dirpath, v2) if dirpath != str(v2) else "/"
                if any(fnmatch.fnmatch(rel, g) for g in globs):
                    targets.append((rel, dirpath, ".pressure"))
        for scope, folder, suffix in targets:
            for t in triggers:
                path = f"{folder}/{t.resource}{suffix}"
                if not os.path.exists(path):
                    continue
                fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
                try:
                    os.write(fd, t.line())
                except OSError as e:
                    os.close(fd)
                    if scope == "system":
                        self._close_all()
                        raise ValueError(f"PSI trigger '{t.resource} {t.kind} {t.stall_us}us/{t.window_us}us' "
                                         f"rejected by the kernel on {path}: {e.strerror}") from None
                    continue
                self._fds[fd] = (scope, t)
        if not self._fds:
            raise SourceUnavailable("no pressure file accepted a trigger")
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="nodetape-psi-triggers", daemon=True)
        self._thread.start()
        return []

    def _run(self) -> None:
        p = select.poll()
        for fd in self._fds:
            p.register(fd, select.POLLPRI)
        p.register(self._wake_r, select.POLLIN)
        while True:
            for fd, ev in p.poll():
                if fd == self._wake_r:
                    return
                ts = self.ctx.clock()
                scope, t = self._fds[fd]
                if ev & (select.POLLERR | select.POLLNVAL | select.POLLHUP):
                    p.unregister(fd)  # the cgroup was removed: its trigger is gone
                    continue
                total = None
                try:
                    total = parse_psi(os.pread(fd, 4096, 0).decode())[f"{t.kind}_total_usec"]
                except OSError:
                    pass
                with self._lock:
                    self._rows.append((ts, scope, t.resource, t.kind, t.stall_us, t.window_us, total))

    def poll(self, now_ns: int) -> Batches:
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return []
        cols = dict(zip(_COLS, map(list, zip(*rows))))
        return self.counted([("psi_events", batch("psi_events", cols))])

    def _close_all(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()

    def stop(self) -> Batches:
        if self._thread is not None:
            os.write(self._wake_w, b"x")
            self._thread.join(5)
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._thread = None
        out = self.poll(0)
        self._close_all()
        return out
