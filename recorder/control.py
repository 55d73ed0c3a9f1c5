"""The recorder's control: stop and snapshot requests, and the loop's wake-ups.

Signal handlers (the CLI's SIGINT/SIGTERM/SIGUSR1) call request_stop() and
request_snapshot(). Python runs a handler in the main thread between two
bytecodes, possibly while that thread is inside threading.Event.wait() holding
the Event's lock: a handler that took a lock (Event.set) could deadlock the
recorder forever. So nothing here takes a lock: a request sets a plain flag and
writes one byte to a non-blocking self-pipe (a full pipe already holds a
wake-up), and the loop sleeps in poll(2) on the pipe's read end. Other threads
(a source with rows: ctx.wake; a library caller's request_stop) use the same
path.
"""

from __future__ import annotations

import os
import select

from nodetape.core.clock import boottime_ns


class Control:
    def __init__(self) -> None:
        self.stop = False
        self.snapshot = False
        self.fd, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._poll = select.poll()
        self._poll.register(self.fd, select.POLLIN)

    # -- any thread, or a signal handler: no lock, no allocation beyond a byte string --
    def request_stop(self, *_args) -> None:
        self.stop = True
        self.wake()

    def request_snapshot(self, *_args) -> None:
        self.snapshot = True
        self.wake()

    def wake(self) -> None:
        w = self._w
        if w < 0:
            return  # closed: the loop is gone
        try:
            os.write(w, b"w")
        except OSError:
            pass  # the pipe is full (a wake-up is pending already) or closed meanwhile

    # -- the loop's thread --------------------------------------------------------------
    def take_snapshot(self) -> bool:
        """Whether a snapshot was requested since the last call (the flag is cleared first, so a
        request arriving while the snapshot is taken is answered by the next one)."""
        if not self.snapshot:
            return False
        self.snapshot = False
        return True

    def drain(self) -> None:
        try:
            while os.read(self.fd, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def wait_requests(self, until_ns: int) -> tuple[bool, bool]:
        """Sleep until `until_ns` (CLOCK_BOOTTIME) or a stop/snapshot request, whichever is first.

        Returns (requested, woken): a stop or snapshot is pending; some other wake-up (a source's
        rows) came meanwhile, which the caller takes at `until_ns`."""
        woken = False
        while True:
            if self.stop or self.snapshot:
                return True, woken
            left = until_ns - boottime_ns()
            if left <= 0:
                return False, woken
            if self._poll.poll(-(-left // 1_000_000)):
                self.drain()
                woken = True

    def close(self) -> None:
        fds, self._w = (self.fd, self._w), -1  # first: a late handler skips the write
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fd = -1
