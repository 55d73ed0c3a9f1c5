"""Kept-open descriptors for files read every interval, within the process's fd limit.

Reading a cgroupfs file with os.pread on a descriptor kept open costs about
1-5 us of CPU here, against about 43 us for open/read/close (DESIGN.md). A
process may hold only RLIMIT_NOFILE descriptors, so descriptors are kept open
while a process-wide budget lasts (the soft limit is raised to the hard one
when allowed, and a reserve is left for everything else: BPF maps, parts,
sockets); past the budget a file is opened, read and closed each time.
"""

from __future__ import annotations

import os
import resource

_state = {"budget": None, "used": 0}
RESERVE = 1024


def raise_nofile() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit when allowed; returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def _budget() -> int:
    if _state["budget"] is None:
        soft = raise_nofile()
        _state["budget"] = max(0, soft - max(RESERVE, soft // 8))
    return _state["budget"]


class KeptFile:
    """A file read whole, again and again; pread when a descriptor could be kept."""

    __slots__ = ("path", "fd")

    def __init__(self, path: str):
        self.path = path
        self.fd = -1

    def read(self, size: int = 4096) -> bytes:
        """The file's content; OSError when it is gone (cgroup removed)."""
        fd = self.fd
        if fd >= 0:
            data = os.pread(fd, size, 0)
        else:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            if _state["used"] < _budget():
                self.fd = fd
                _state["used"] += 1
                data = os.pread(fd, size, 0)
            else:
                try:
                    data = os.read(fd, size)
                finally:
                    os.close(fd)
                    fd = -1
        if len(data) == size:  # longer than one buffer (a big cgroup.procs): read the rest
            chunks = [data]
            off = size
            while True:
                if fd >= 0:
                    more = os.pread(fd, 65536, off)
                else:
                    with open(self.path, "rb", buffering=0) as f:
                        return f.read()
                if not more:
                    break
                chunks.append(more)
                off += len(more)
            data = b"".join(chunks)
        return data

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            _state["used"] -= 1


class FreshFile:
    """A file that must be opened anew for each read: same interface as KeptFile.

    v1 cgroup.procs and tasks are built once per open file: the pid list is
    loaded at the first read after open() and reused by later reads of that
    descriptor while it is kept (kernel/cgroup/cgroup-v1.c cgroup_pidlist_start:
    "!NULL ctx->procs1.pidlist indicates that this isn't the first start() after
    open"; the list is only dropped a second after its last use). A kept
    descriptor read every interval would report the same pids forever
    (seen here: a reaped process still counted after 0.6 s of samples).
    """

    __slots__ = ("path",)
    fd = -1

    def __init__(self, path: str):
        self.path = path

    def read(self, size: int = 4096) -> bytes:
        with open(self.path, "rb", buffering=0) as f:
            return f.read()

    def close(self) -> None:
        pass
