"""One clock: CLOCK_BOOTTIME in nanoseconds (what bpf_ktime_get_boot_ns returns)."""

from __future__ import annotations

import time


def boottime_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def realtime_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_REALTIME)


def clock_pair() -> tuple[int, int]:
    """A (boottime_ns, realtime_ns) pair read as close together as we can.

    Reads realtime between two boottime reads and uses the midpoint, so the pair's
    error is half the gap (typically well under a microsecond).
    """
    b0 = boottime_ns()
    r = realtime_ns()
    b1 = boottime_ns()
    return (b0 + b1) // 2, r
