"""Pacing: hold each event until its recorded time, scaled by --speed.

The clock and sleep are injectable so tests drive pacing with a fake clock
(STYLE: never assert a timing in a unit test). Pacing is anchored at the start
of the window (the tape's start, or --from), not at the first event: a consumer
started next to `replay --into` gets the same lead time the recording had.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Pacer:
    def __init__(self, speed: float | None, start_ns: int, *,
                 clock: Callable[[], int] = time.monotonic_ns,
                 sleep: Callable[[float], None] = time.sleep):
        if speed is not None and speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self.start_ns = start_ns
        self._clock = clock
        self._sleep = sleep
        self._anchor: int | None = None
        # how late events went out behind their paced time, for the benchmark
        self.max_late_ns = 0

    @property
    def paced(self) -> bool:
        return self.speed is not None

    def start(self) -> None:
        if self._anchor is None:
            self._anchor = self._clock()

    def target_ns(self, event_ns: int) -> int:
        """Monotonic-clock time at which an event recorded at event_ns is due."""
        self.start()
        return self._anchor + int(max(0, event_ns - self.start_ns) / self.speed)

    def wait(self, event_ns: int) -> None:
        if self.speed is None:
            return
        due = self.target_ns(event_ns)
        now = self._clock()
        if due > now:
            self._sleep((due - now) / 1e9)
        else:
            self.max_late_ns = max(self.max_late_ns, now - due)
