"""PSI trigger specifications: 'memory some 150ms/2s' -> what to write to a pressure file.

Kernel rules (Documentation/accounting/psi.rst, kernel/sched/psi.c psi_trigger_create):
the window must be within [500ms, 10s] and the threshold no larger than the
window; an unprivileged process (no CAP_SYS_RESOURCE) may only use windows that
are a multiple of 2s, since its triggers are served by the 2 s averaging work.
"""

from __future__ import annotations

from typing import NamedTuple

from nodetape.core.durations import parse_duration_ns

RESOURCES = ("cpu", "memory", "io", "irq")
KINDS = ("some", "full")
WINDOW_MIN_US = 500_000
WINDOW_MAX_US = 10_000_000
UNPRIV_WINDOW_US = 2_000_000


class Trigger(NamedTuple):
    resource: str
    kind: str
    stall_us: int
    window_us: int

    def line(self) -> bytes:
        """What is written to the pressure file (with a NUL: the kernel wants a terminated string)."""
        return f"{self.kind} {self.stall_us} {self.window_us}".encode() + b"\0"


def parse_trigger(text: str, privileged: bool = True) -> Trigger:
    """Parse 'RESOURCE some|full STALL/WINDOW' (durations like 150ms, 2s); ValueError names the trigger."""
    parts = text.split()
    if len(parts) != 3 or "/" not in parts[2]:
        raise ValueError(f"PSI trigger {text!r}: expected 'RESOURCE some|full STALL/WINDOW', e.g. 'memory some 150ms/2s'")
    resource, kind, times = parts
    if resource not in RESOURCES:
        raise ValueError(f"PSI trigger {text!r}: resource must be one of {', '.join(RESOURCES)}")
    if kind not in KINDS:
        raise ValueError(f"PSI trigger {text!r}: kind must be 'some' or 'full'")
    stall_s, _, window_s = times.partition("/")
    try:
        stall_us = parse_duration_ns(stall_s) // 1000
        window_us = parse_duration_ns(window_s) // 1000
    except ValueError as e:
        raise ValueError(f"PSI trigger {text!r}: {e}") from None
    if not WINDOW_MIN_US <= window_us <= WINDOW_MAX_US:
        raise ValueError(f"PSI trigger {text!r}: the kernel accepts windows from 500ms to 10s, not {window_s}")
    if not 0 < stall_us <= window_us:
        raise ValueError(f"PSI trigger {text!r}: the stall threshold must be above 0 and at most the window")
    if not privileged and window_us % UNPRIV_WINDOW_US:
        raise ValueError(f"PSI trigger {text!r}: without CAP_SYS_RESOURCE the window must be a multiple of 2s")
    return Trigger(resource, kind, stall_us, window_us)
