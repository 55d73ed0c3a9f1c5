"""An inotify view of every cgroup directory of every hierarchy, shared by sources.

One watch per cgroup directory (IN_CREATE, IN_DELETE, IN_MODIFY, only dirs):
- IN_CREATE/IN_DELETE of a sub-directory are cgroup creation and removal;
- IN_MODIFY of a file in the directory is either a write(2) to that file
  (vfs_write calls fsnotify_modify on every successful write: cpu.max,
  memory.limit_in_bytes, cgroup.procs, ...) or a kernfs notification of a
  "notify" file (cgroup.events, memory.events: cgroup_file_notify()).

The kernel ABI is inotify.py (watchdog's ctypes system calls, our own event
parser). We do not use watchdog's observer thread: a consumer must be able to
`drain()` synchronously, so that everything written before the drain is known
when it reads (the samples source relies on that to skip config files that
were not written, see docs/sources/samples.md). tree_reader.py is the thread
that drains as events come.

IN_Q_OVERFLOW (the kernel queue, fs.inotify.max_queued_events, was full) means
events were lost: listeners get an 'overflow' call, then the tree is rescanned:
new cgroups are reported as `seen` with source 'scan', vanished ones as
`removed` with source 'scan', and every cgroup still known gets a 'rescanned'
call so listeners can re-read the notify files they track.

Sources see the tree through its public methods: subscribe() (the current
nodes, atomically with the subscription), `nodes`, `generation`, path(), drain(),
request_rescan(), and `with tree.locked():` around what must not interleave
with a listener call (listeners run under that lock, on whichever thread drains).

Bounded work (DESIGN.md principle 4): every caller of drain() holds the lock
for at most DRAIN_BUDGET_NS (plus one event), so a storm of thousands of
cgroups never blocks the recorder loop, whose sources (samples, psi, cgroup)
take the same lock. Events read but not handled yet wait in `_pending`, in
queue order, for the next drain; a rescan advances one directory at a time
across drains, and no event is handled while it runs (so it reconciles with a
tree nobody else changes). Removal is O(subtree) through a children index: a
scan of every node per IN_DELETE made a storm of 10,000 removals take seconds
under the lock (soak: single polls of 9.6 s and 24.3 s).
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator

from nodetape.recorder import inotify
from nodetape.recorder.inotify import IN
from nodetape.recorder.kernelfs.cgroupfs import CgroupLayout
from nodetape.recorder.tree_reader import TreeReader

MASK = IN.IN_CREATE | IN.IN_DELETE | IN.IN_MODIFY | IN.IN_ONLYDIR
# one read takes at most this many bytes (about 1,000 events of cgroup names)
_BUF = 32 * 1024
# how long one drain() may hold the lock; the rest waits for the next drain, in order
DRAIN_BUDGET_NS = 20_000_000

Key = tuple[str, str]  # (hierarchy, relative path '/...')
# listener(ts_ns, kind, hierarchy, relpath, name, cgroup_id, source)
# kind: 'created', 'removed', 'modified' (name = file name), 'seen' (rescan), 'overflow'
# (events were lost; a rescan starts), 'rescanned' (a known cgroup visited by that rescan)
Listener = Callable[[int, str, str, str, str | None, int | None, str], None]


def _join(rel: str, name: str) -> str:
    return f"/{name}" if rel == "/" else f"{rel}/{name}"


def _parent(rel: str) -> str | None:
    return None if rel == "/" else (rel.rsplit("/", 1)[0] or "/")


class CgroupTree:
    def __init__(self, layout: CgroupLayout, clock: Callable[[], int]):
        self.layout = layout
        self.clock = clock
        self.nodes: dict[Key, int | None] = {}  # key -> cgroup id (st_ino)
        self.generation = 0  # bumped on every creation/removal, so users can cache lists
        self.overflows = 0
        self.watch_errors = 0
        self.last_watch_error: str | None = None
        self.rescans_done = 0
        self._wd: dict[int, Key] = {}
        self._key_wd: dict[Key, int] = {}
        self._kids: dict[Key, set[str]] = {}  # known children of each node: removal is O(subtree)
        self._pending: deque[tuple[int, int, int, str]] = deque()  # read, not handled: (ts, wd, mask, name)
        self._rescan_it: Iterator[None] | None = None
        self._listeners: list[Listener] = []
        self._full: list[Callable[[], bool]] = []  # listeners that cannot take more now (back-pressure)
        self._lock = threading.RLock()
        self._fd = -1
        self._reader: TreeReader | None = None
        self._users = 0

    # -- lifecycle -----------------------------------------------------------
    def open(self) -> None:
        self._fd = inotify.open_fd()
        for hier in self.layout.hierarchies:
            self._scan(hier, "/", None, None)

    def acquire(self) -> None:
        self._users += 1

    def release(self) -> bool:
        """One user is done; the last one closes the tree (returns True then)."""
        self._users -= 1
        if self._users <= 0:
            self.close()
            return True
        return False

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the tree still: inside, no event is handled and no listener runs (they run under
        this lock), so `nodes` and whatever listeners change are consistent; re-entrant."""
        with self._lock:
            yield

    def close(self) -> None:
        if self._reader is not None:
            self._reader.stop()
            self._reader = None
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)  # drops every watch
                self._fd = -1

    def start_thread(self) -> None:
        """Read events as they come (timely timestamps, immediate reads of cgroup.events)."""
        if self._reader is None:
            self._reader = TreeReader(self._fd, self.drain, self.backlog, self.blocked)
            self._reader.start()

    def backlog(self) -> bool:
        """Events read but not handled yet, or a rescan in progress."""
        return bool(self._pending) or self._rescan_it is not None

    def unsubscribe(self, fn: Listener, full: Callable[[], bool] | None = None) -> None:
        with self._lock:
            if fn in self._listeners:
                self._listeners.remove(fn)
            if full is not None and full in self._full:
                self._full.remove(full)

    def add_backpressure(self, full: Callable[[], bool]) -> None:
        """While full() is true, drains handle nothing: events wait in the kernel queue.

        A listener that holds rows until the recorder loop takes them bounds its
        memory this way; if the kernel queue then overflows, the rescan that
        follows reports what was missed (seen / removed by 'scan'), so no cgroup
        goes missing, where dropping rows would lose removals for good.
        """
        with self._lock:
            self._full.append(full)

    def blocked(self) -> bool:
        return any(f() for f in self._full)

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
        wd = inotify.add_watch(self._fd, path, MASK)
        if wd < 0:
            if -wd in (errno.ENOENT, errno.ENOTDIR):
                return False  # removed before we got to it
            self.watch_errors += 1
            self.last_watch_error = f"{path}: {inotify.explain(-wd)}"
        else:
            self._wd[wd] = (hier, rel)
            self._key_wd[(hier, rel)] = wd
        if ino is None:
            try:
                ino = os.stat(path).st_ino
            except OSError:
                return False
        self._set_node((hier, rel), ino)
        return True

    def _set_node(self, key: Key, ino: int | None) -> None:
        self.nodes[key] = ino
        parent = _parent(key[1])
        if parent is not None:
            self._kids.setdefault((key[0], parent), set()).add(key[1])

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
                        self._set_node(key, None)
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
        hier = key[0]
        gone, stack = [], [key[1]]
        while stack:  # the subtree, from the children index
            r = stack.pop()
            gone.append(r)
            stack.extend(self._kids.pop((hier, r), ()))
        parent = _parent(key[1])
        if parent is not None:
            sib = self._kids.get((hier, parent))
            if sib is not None:
                sib.discard(key[1])
                if not sib:
                    del self._kids[(hier, parent)]
        for r in sorted(gone, key=lambda r: -r.count("/")):  # leaves first, as the kernel removes them
            k = (hier, r)
            if k not in self.nodes:
                continue
            ino = self.nodes.pop(k)
            wd = self._key_wd.pop(k, None)
            if wd is not None:
                self._wd.pop(wd, None)
            self._emit(ts, "removed", hier, r, None, ino, source)
        self.generation += 1

    def _emit(self, ts, kind, hier, rel, name, ino, source) -> None:
        for fn in self._listeners:
            fn(ts, kind, hier, rel, name, ino, source)

    # -- events --------------------------------------------------------------
    def drain(self, budget_ns: int = DRAIN_BUDGET_NS) -> int:
        """Handle queued events in order for at most budget_ns; returns how many were handled.

        When it returns with backlog() false, every event queued before the call
        was handled. Otherwise the rest (events read, a rescan under way, the
        kernel queue) waits for the next drain, of this thread or another.
        """
        n = 0
        with self._lock:
            if self._fd < 0:
                return 0
            deadline = time.monotonic_ns() + budget_ns
            pending = self._pending
            while True:
                if self._full and self.blocked():
                    break
                if self._rescan_it is not None:
                    if next(self._rescan_it, StopIteration) is StopIteration:
                        self._rescan_it = None
                        self.rescans_done += 1
                elif pending:
                    ts, wd, mask, name = pending.popleft()
                    n += 1
                    self._handle(ts, wd, mask, name)
                elif not self._read():
                    break
                if time.monotonic_ns() >= deadline:
                    break
        return n

    def _read(self) -> bool:
        """Read one buffer of events into _pending; False when the queue is empty."""
        buf = inotify.read_events(self._fd, _BUF)
        if buf is None:
            return False
        ts = self.clock()
        for wd, mask, _cookie, name in inotify.parse_events(buf):
            self._pending.append((ts, wd, mask, name.decode(errors="surrogateescape")))
        return True

    def _handle(self, ts: int, wd: int, mask: int, name: str) -> None:
        if mask & IN.IN_Q_OVERFLOW:
            self.overflows += 1
            self._emit(ts, "overflow", "", "", None, None, "scan")
            # a new overflow during a rescan restarts it: what it walked may be stale
            self._rescan_it = self._rescan_steps()
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

    def request_rescan(self) -> None:
        """Start a rescan (or start over the one under way); drains advance it step by step."""
        with self._lock:
            self._rescan_it = self._rescan_steps()
            if self._reader is not None:
                self._reader.wake()

    def rescan(self, ts: int | None = None) -> None:
        """Reconcile with the tree on disk now, in full (the drain does it step by step)."""
        with self._lock:
            for _ in self._rescan_steps(ts):
                pass

    def _rescan_steps(self, ts: int | None = None) -> Iterator[None]:
        """Walk every hierarchy, one directory per step: report missed cgroups as seen, vanished ones as removed.

        Events are not handled while the walk runs (drain() advances it first),
        so nodes change only here: what was not visited at the end has vanished.
        """
        visited: set[Key] = set()
        for hier in list(self.layout.hierarchies):
            stack: list[tuple[str, int | None]] = [("/", None)]
            while stack:
                r, ino = stack.pop()
                key = (hier, r)
                now = self.clock() if ts is None else ts
                try:
                    with os.scandir(self.path(hier, r)) as it:
                        subs = [(_join(r, e.name), e.inode()) for e in it if e.is_dir(follow_symlinks=False)]
                except OSError:
                    yield
                    continue  # vanished since its parent was listed: not visited, so removed at the end
                known = self.nodes.get(key, -1)
                if known != -1 and ino is not None and known is not None and known != ino:
                    self._forget(key, now, "scan")  # removed and made again while events were lost
                    known = -1
                if known != -1:
                    visited.add(key)
                    self._emit(now, "rescanned", hier, r, None, known, "scan")
                elif self._add(hier, r, ino):
                    visited.add(key)
                    self.generation += 1
                    self._emit(now, "seen", hier, r, None, self.nodes[key], "scan")
                stack.extend(sorted(subs, reverse=True))
                yield
        now = self.clock() if ts is None else ts
        for key in [k for k in self.nodes if k not in visited]:
            if key in self.nodes:
                self._forget(key, now, "scan")
            yield


def shared_tree(ctx) -> CgroupTree:
    """The tree in ctx.shared (created and opened by the first source that asks)."""
    tree = ctx.shared.get("cgroup_tree")
    if tree is None:
        tree = CgroupTree(ctx.layout, ctx.clock)
        tree.open()
        ctx.shared["cgroup_tree"] = tree
    tree.acquire()
    return tree


def release_shared(ctx, tree: CgroupTree) -> None:
    """A source is done with the shared tree; the last user closes it and takes it out of ctx."""
    if tree.release() and ctx.shared.get("cgroup_tree") is tree:
        ctx.shared.pop("cgroup_tree", None)
