"""The inotify kernel ABI, below the cgroup tree: an fd, watches, and the event records.

The system calls come from watchdog's ctypes layer (`inotify_c`: inotify_init,
inotify_add_watch); the event records are parsed here, from inotify(7):

    struct inotify_event { int32 wd; uint32 mask; uint32 cookie; uint32 len; char name[len]; }

`name` is NUL-terminated and padded with NULs to an alignment (len counts the
padding), absent (len 0) for events on the watched directory itself and for
IN_Q_OVERFLOW (wd -1). Names are bytes: a cgroup's name need not be UTF-8.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct
from collections.abc import Iterator

from watchdog.observers.inotify_c import InotifyConstants as IN
from watchdog.observers.inotify_c import inotify_add_watch, inotify_init

__all__ = ["IN", "ERRORS", "explain", "open_fd", "add_watch", "read_events", "parse_events"]

_HEADER = struct.Struct("=iIII")  # wd, mask, cookie, len: native order, as the kernel writes it

# errno -> what to do about it (watchdog's table, with the sysctl to raise)
ERRORS = {
    errno.ENOSPC: "inotify watch limit reached (raise fs.inotify.max_user_watches)",
    errno.EMFILE: "inotify instance limit reached (raise fs.inotify.max_user_instances)",
    errno.EACCES: "permission denied",
}


def explain(e: int) -> str:
    return ERRORS.get(e, os.strerror(e))


def parse_events(buf: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """(wd, mask, cookie, name) of each inotify_event in `buf`, in order.

    The name ends at its first NUL (the rest is padding). A record cut short at the
    end of the buffer is not returned: read(2) on an inotify fd returns whole events.
    """
    off, end, size = 0, len(buf), _HEADER.size
    while off + size <= end:
        wd, mask, cookie, length = _HEADER.unpack_from(buf, off)
        start = off + size
        if start + length > end:
            return
        name = bytes(buf[start:start + length])
        nul = name.find(b"\0")
        yield wd, mask, cookie, name if nul < 0 else name[:nul]
        off = start + length


def open_fd() -> int:
    """A new non-blocking, close-on-exec inotify fd; OSError with a remedy when the kernel refuses."""
    fd = inotify_init()
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, explain(e))
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
    fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
    return fd


def add_watch(fd: int, path: str, mask: int) -> int:
    """The watch descriptor of `path`, or -errno (the caller decides what a failure means)."""
    wd = inotify_add_watch(fd, os.fsencode(path), mask)  # names need not be UTF-8
    return wd if wd >= 0 else -ctypes.get_errno()


def read_events(fd: int, bufsize: int) -> bytes | None:
    """One read of queued events (at most bufsize bytes); None when the queue is empty."""
    while True:
        try:
            return os.read(fd, bufsize)
        except BlockingIOError:
            return None
        except InterruptedError:
            continue
