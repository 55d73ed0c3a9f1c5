"""An inotify view of every cgroup directory of every hierarchy, shared by sources.

One watch per cgroup directory (IN_CREATE, IN_DELETE, IN_MODIFY, only dirs):
- IN_CREATE/IN_DELETE of a sub-directory are cgroup creation and removal;
- IN_MODIFY of a file in the directory is either a write(2) to that file
  (vfs_write calls fsnotify_modify on every successful write: cpu.max,
  memory.limit_in_bytes, cgroup.procs, ...) or a kernfs notification of a
  "notify" file (cgroup.events, memory.events: cgroup_file_notify()).

The kernel ABI comes from watchdog's ctypes layer (inotify_c: inotify_init,
inotify_add_watch, event parsing). We do not use its observer thread: a
consumer must be able to `drain()` synchronously, so that everything written
before the drain is known when it reads (the samples source relies on that to
skip config files that were not written, see docs/sources/samples.md).

IN_Q_OVERFLOW (the kernel queue, fs.inotify.max_queued_events, was full) means
events were lost: the tree is rescanned, new cgroups are reported as `seen`
with source 'scan', vanished ones as `removed` with source 'scan', and
listeners get an 'overflow' call so they can re-read what they track.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import threading
from collections.abc import Callable

from watchdog.observers.inotify_c import InotifyConstants as IN
from watchdog.observers.inotify_c import InotifyFD, inotify_add_watch, inotify_init, inotify_rm_watch

from .kernelfs.cgroupfs import CgroupLayout

MASK = IN.IN_CREATE | IN.IN_DELETE | IN.IN_MODIFY | IN.IN_ONLYDIR
# one read takes at most this many bytes; a drain reads at most _MAX_READS buffers so it stays bounded
_BUF = 64 * 1024
_MAX_READS = 64

Key = tuple[str, str]  # (hierarchy, relative path '/...')
# listener(ts_ns, kind, hierarchy, relpath, name, cgroup_id, source)
# kind: 'created', 'removed', 'modified' (name = file name), 'seen' (rescan), 'overflow'
Listener = Callable[[int, str, str, str, str | None, int | None, str], None]

_ERRORS = {
    errno.ENOSPC: "inotify watch limit reached (raise fs.inotify.max_user_watches)",
    errno.EMFILE: "inotify instance limit reached (raise fs.inotify.max_user_instances)",
    errno.EACCES: "permission denied",
}


def _join(rel: str, name: str) -> str:
    return f"/{name}" if rel == "/" else f"{rel}/{name}"


class CgroupTree:
    def __init__(self, layout: CgroupLayout, clock: Callable[[], int]):
        self.layout = layout
        self.clock = clock
        self.nodes: dict[Key, int | None] = {}  # key -> cgroup id (st_ino)
        self.generation = 0  # bumped on every creation/removal, so users can cache lists
        self.overflows = 0
        self.watch_errors = 0
        self.last_watch_error: str | None = None
        self._wd: dict[int, Key] = {}
        self._key_wd: dict[Key, int] = {}
        self._listeners: list[Listener] = []
        self._lock = threading.RLock()
        self._fd = -1
        self._thread: threading.Thread | None = None
        self._stop_r = self._stop_w = -1
        self._users = 0

    # -- lifecycle -----------------------------------------------------------
    def open(self) -> None:
        fd = inotify_init()
        if fd < 0:
            import ctypes
            e = ctypes.get_errno()
            raise OSError(e, _ERRORS.get(e, os.strerror(e)))
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
        self._fd = fd
        for hier in self.layout.hierarchies:
            self._scan(hier, "/", None, None)

    def acquire(self) -> None:
        self._users += 1

    def release(self) -> None:
        self._users -= 1
        if self._users <= 0:
            self.close()

    def close(self) -> None:
        if self._thread is not None:
            os.write(self._stop_w, b"x")
            self._thread.join(5)
            self._thread = None
            os.close(self._stop_r)
            os.close(self._stop_w)
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)  # drops every watch
                self._fd = -1

    def start_thread(self) -> None:
        """Read events as they come (timely timestamps, immediate reads of cgroup.events)."""
        if self._thread is not None:
            return
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="nodetape-cgroup-inotify", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        p = select.poll()
        p.register(self._fd, select.POLLIN)
        p.register(self._stop_r, select.POLLIN)
        while True:
            ready = p.poll()
            if any(fd == self._stop_r for fd, _ in ready):
                return
            self.drain()

    def subscribe(self, fn: Listener) -> dict[Key, int | None]:
        """Add a listener; returns the current nodes (taken atomically with the subscription)."""
        with self._lock:
            self._listeners.append(fn)
            return dict(self.nodes)

    def hierarchy_dir(self, hier: str) -> str:
        return str(self.layout.hierarchies[hier])

    def path(self, hier: str, rel: str) -> str:
        base = self.hierarchy_dir(hier)
        return base if rel == "/" else base + rel

    # -- watching ------------------------------------------------------------
    def _add(self, hier: str, rel: str, ino: int | None) -> bool:
        path = self.path(hier, rel)
        wd = inotify_add_watch(self._fd, path.encode(), MASK)
        if wd < 0:
            import ctypes
            e = ctypes.get_errno()
            if e in (errno.ENOENT, errno.ENOTDIR):
                return False  # removed before we got to it
            self.watch_errors += 1
            self.last_watch_error = f"{path}: {_ERRORS.get(e, os.strerror(e))}"
        else:
            self._wd[wd] = (hier, rel)
            self._key_wd[(hier, rel)] = wd
        if ino is None:
            try:
                ino = os.stat(path).st_ino
            except OSError:
                return False
        self.nodes[(hier, rel)] = ino
        return True

    def _scan(self, hier: str, rel: str, ts: int | None, kind: str | None, source: str = "inotify") -> list[Key]:
        """Watch rel and everything below it that is not known yet; report new ones as `kind`."""
        found: list[Key] = []
        stack = [(rel, None)]
        while stack:
            r, ino = stack.pop()
            key = (hier, r)
            if key not in self.nodes:
                if not self._add(hier, r, ino):
                    if r == rel and kind == "created":
                        # created and removed before we could watch it: still a cgroup that lived;
                        # the IN_DELETE that follows in the queue reports its removal
                        self.nodes[key] = None
                        found.append(key)
                        self._emit(ts, kind, hier, r, None, None, source)
                    continue
                found.append(key)
                if kind is not None:
                    self._emit(ts, kind, hier, r, None, self.nodes[key], source)
            try:
                with os.scandir(self.path(hier, r)) as it:
                    subs = [(_join(r, e.name), e.inode()) for e in it if e.is_dir(follow_symlinks=False)]
            except OSError:
                continue
            stack.extend(reversed(sorted(subs)))
        if found:
            self.generation += 1
        return found

    def _forget(self, key: Key, ts: int, source: str) -> None:
        hier, rel = key
        prefix = rel + "/"
        gone = [k for k in self.nodes if k[0] == hier and (k[1] == rel or k[1].startswith(prefix))]
        for k in sorted(gone, key=lambda k: -k[1].count("/")):
            ino = self.nodes.pop(k)
            wd = self._key_wd.pop(k, None)
            if wd is not None:
                self._wd.pop(wd, None)
            self._emit(ts, "removed", k[0], k[1], None, ino, source)
        if gone:
            self.generation += 1

    def _emit(self, ts, kind, hier, rel, name, ino, source) -> None:
        for fn in self._listeners:
            fn(ts, kind, hier, rel, name, ino, source)

    # -- events --------------------------------------------------------------
    def drain(self) -> int:
        """Read and handle every queued event (bounded); returns how many were handled."""
        n = 0
        with self._lock:
            if self._fd < 0:
                return 0
            for _ in range(_MAX_READS):
                try:
                    buf = os.read(self._fd, _BUF)
                except BlockingIOError:
                    break
                except OSError as e:
                    if e.errno == errno.EINTR:
                        continue
                    raise
                ts = self.clock()
                for wd, mask, _cookie, name in InotifyFD._parse_event_buffer(buf):  # noqa: SLF001 - watchdog's ABI parser
                    n += 1
                    self._handle(ts, wd, mask, name.decode(errors="surrogateescape"))
        return n

    def _handle(self, ts: int, wd: int, mask: int, name: str) -> None:
        if mask & IN.IN_Q_OVERFLOW:
            self.overflows += 1
            self.rescan(ts)
            self._emit(ts, "overflow", "", "", None, None, "scan")
            return
        if mask & IN.IN_IGNORED:
            key = self._wd.pop(wd, None)
            if key is not None and self._key_wd.get(key) == wd:
                del self._key_wd[key]
            return
        key = self._wd.get(wd)
        if key is None:
            return
        hier, rel = key
        if mask & IN.IN_ISDIR:
            child = _join(rel, name)
            if mask & IN.IN_CREATE:
                self._scan(hier, child, ts, "created")
            elif mask & IN.IN_DELETE and (hier, child) in self.nodes:
                self._forget((hier, child), ts, "inotify")
        elif mask & IN.IN_MODIFY:
            self._emit(ts, "modified", hier, rel, name, self.nodes.get(key), "inotify")

    def rescan(self, ts: int) -> None:
        """Reconcile with the tree on disk: report missed cgroups as seen, vanished ones as removed."""
        with self._lock:
            present: set[Key] = set()
            for hier in self.layout.hierarchies:
                stack = ["/"]
                while stack:
                    r = stack.pop()
                    present.add((hier, r))
                    try:
                        with os.scandir(self.path(hier, r)) as it:
                            stack.extend(_join(r, e.name) for e in it if e.is_dir(follow_symlinks=False))
                    except OSError:
                        present.discard((hier, r))
            for key in [k for k in self.nodes if k not in present]:
                if key in self.nodes:
                    self._forget(key, ts, "scan")
            for hier, rel in sorted(present - set(self.nodes)):
                self._scan(hier, rel, ts, "seen", "scan")

    def unwatch_all(self) -> None:
        with self._lock:
            for wd in list(self._wd):
                inotify_rm_watch(self._fd, wd)


def shared_tree(ctx) -> CgroupTree:
    """The tree in ctx.shared (created and opened by the first source that asks)."""
    tree = ctx.shared.get("cgroup_tree")
    if tree is None:
        tree = CgroupTree(ctx.layout, ctx.clock)
        tree.open()
        ctx.shared["cgroup_tree"] = tree
        # other sources (e.g. eBPF ones) map cgroup ids to paths through this
        ctx.shared["cgroup_paths"] = _PathsView(tree)
    tree.acquire()
    return tree


class _PathsView:
    """Read-only mapping cgroup_id -> (hierarchy, relpath), computed on demand."""

    def __init__(self, tree: CgroupTree):
        self._tree = tree

    def get(self, cgroup_id, default=None):
        for k, v in list(self._tree.nodes.items()):
            if v == cgroup_id:
                return k
        return default

    def items(self):
        return [(v, k) for k, v in list(self._tree.nodes.items())]
