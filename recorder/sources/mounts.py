"""mounts: the mount table of PROC/self/mountinfo, a snapshot at start and a row per change.

The file is read again from the start of a kept descriptor and, only if its bytes
changed, parsed and compared by mount id: a new id is `added`, a vanished one
`removed` (a remount that changes options is removed + added under the same id,
so both rows carry the full line).

When it is read again: on procfs the kernel reports a change of the mount table on the
descriptor itself (poll(2) gives POLLPRI|POLLERR once per change since the last poll
of it, fs/proc_namespace.c mounts_poll), so an idle node's table is not read at all:
the loop waits on a second descriptor of the file (wait_fds; its edge-triggered epoll
reports each change, and consumes that descriptor's flag, hence two) and the poll reads
the file only when poll(2) on the read descriptor says it changed. Elsewhere (a folder
laid out like /proc) it is read once per interval.
"""

from __future__ import annotations

import os
import select

from ...schemas import batch
from ..kernelfs.procfs import MountInfo, parse_mountinfo
from ..source import NEVER, BaseSource, Batches, RecordContext, SourceUnavailable

_CHANGED = select.POLLPRI | select.POLLERR
_COLS = ("ts_ns", "event", "mount_id", "parent_id", "major_minor", "root", "mountpoint", "options", "fstype",
         "source", "super_options")


class MountsSource(BaseSource):
    name = "mounts"
    tables = ("mounts",)
    summary = "mount table snapshot at start and added/removed mounts, from /proc/self/mountinfo"
    needs = "a readable procfs"
    sampled = True

    def probe(self, ctx: RecordContext) -> None:
        if not os.access(ctx.proc_root / "self" / "mountinfo", os.R_OK):
            raise SourceUnavailable(f"cannot read {ctx.proc_root / 'self' / 'mountinfo'}")

    def start(self, ctx: RecordContext) -> Batches:
        super().start(ctx)
        self._path = ctx.proc_root / "self" / "mountinfo"
        self._fd, self._wake_fd, self._raw = -1, -1, None
        # the kernel's change notification is about the procfs this process mounted, its own table
        self._notified = str(ctx.proc_root) == "/proc"
        if self._notified:
            # opened before the read: a change after it is flagged on both descriptors
            self._fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
            self._wake_fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
            self._changes = select.poll()
            self._changes.register(self._fd, select.POLLPRI)
        self._raw = self._read()
        self._mounts = {m.mount_id: m for m in parse_mountinfo(self._raw.decode(errors="surrogateescape"))}
        ts = ctx.clock()
        return self._emit([(ts, "snapshot", m) for m in self._mounts.values()])

    def _read(self) -> bytes:
        # the kept descriptor, read again from its start: the kernel makes the text afresh at offset 0
        # (seq_file), then reads on sequentially (a pread at a later offset would walk the table again)
        if self._fd < 0:
            self._fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
        os.lseek(self._fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(self._fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)

    def stop(self) -> Batches:
        for fd in (self._fd, self._wake_fd):
            if fd >= 0:
                os.close(fd)
        self._fd = self._wake_fd = -1
        return []

    def _emit(self, rows: list[tuple[int, str, MountInfo]]) -> Batches:
        if not rows:
            return []
        cols = {k: [] for k in _COLS}
        for ts, ev, m in rows:
            cols["ts_ns"].append(ts)
            cols["event"].append(ev)
            for k, v in zip(MountInfo._fields, m):
                cols[k].append(v)
        return self.counted([("mounts", batch("mounts", cols))])

    def next_poll_ns(self) -> int | None:
        """On procfs only when the descriptor reports a change (wait_fds), else each interval."""
        return NEVER if self._notified else super().next_poll_ns()

    def wait_fds(self) -> list[int]:
        return [self._wake_fd] if self._wake_fd >= 0 else []

    def poll(self, now_ns: int) -> Batches:
        if self._notified:
            if not any(ev & _CHANGED for _, ev in self._changes.poll(0)):
                return []  # woken with the others, or the wake-up of registering the descriptor
        elif not self.due(now_ns):
            return []
        raw = self._read()
        if raw == self._raw:
            return []
        self._raw = raw
        ts = self.ctx.clock()
        new = {m.mount_id: m for m in parse_mountinfo(raw.decode(errors="surrogateescape"))}
        rows = []
        for mid, m in self._mounts.items():
            if new.get(mid) != m:
                rows.append((ts, "removed", m))
        for mid, m in new.items():
            if self._mounts.get(mid) != m:
                rows.append((ts, "added", m))
        self._mounts = new
        return self._emit(rows)
