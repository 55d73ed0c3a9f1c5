"""The thread that drains a CgroupTree as its inotify events come.

Events handled as they arrive give timely timestamps and immediate reads of
cgroup.events. The thread sleeps in poll(2) on the inotify fd, a stop pipe and
a wake pipe (request_rescan), so an idle tree costs nothing. Everything it does
goes through the tree's drain(), bounded like any other caller's.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable


class TreeReader:
    def __init__(self, fd: int, drain: Callable[[], int], backlog: Callable[[], bool],
                 blocked: Callable[[], bool]):
        self._fd = fd
        self._drain, self._backlog, self._blocked = drain, backlog, blocked
        self._stop_r, self._stop_w = os.pipe()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._run, name="nodetape-cgroup-inotify", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(5)
        for fd in (self._stop_r, self._stop_w, self._wake_r, self._wake_w):
            os.close(fd)
        self._stop_r = self._stop_w = self._wake_r = self._wake_w = -1

    def wake(self) -> None:
        """Drain now (a rescan was requested: drains advance it)."""
        if self._wake_w >= 0:
            try:
                os.write(self._wake_w, b"w")
            except BlockingIOError:
                pass  # a wake-up is already pending

    def _run(self) -> None:
        p = select.poll()
        p.register(self._fd, select.POLLIN)
        p.register(self._stop_r, select.POLLIN)
        p.register(self._wake_r, select.POLLIN)
        backlog = False
        while True:
            # with a backlog, only look for the stop request, then drain again
            ready = p.poll(0 if backlog else None)
            fds = {fd for fd, _ in ready}
            if self._stop_r in fds:
                return
            if self._wake_r in fds:
                try:
                    os.read(self._wake_r, 4096)
                except BlockingIOError:
                    pass
            self._drain()
            blocked = self._blocked()
            backlog = self._backlog() or (blocked and self._readable())
            if backlog:
                # let a waiting loop thread take the lock (CPython locks are not fair);
                # under back-pressure, wait for the loop to take rows
                time.sleep(0.01 if blocked else 0.0005)

    def _readable(self) -> bool:
        p = select.poll()
        p.register(self._fd, select.POLLIN)
        return bool(p.poll(0))
