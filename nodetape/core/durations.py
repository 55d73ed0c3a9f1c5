"""Durations as written on the command line: 500ms, 8s, 15m, 1h, 1h30m, 2.5s."""

from __future__ import annotations

import re

_UNITS_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)")


def parse_duration_ns(text: str) -> int:
    """Parse a duration into nanoseconds; ValueError with the offending text otherwise."""
    s = text.strip().lower()
    if not s:
        raise ValueError("empty duration")
    pos, total = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS_NS[m.group(2)]
        pos = m.end()
    if pos != len(s) or pos == 0:
        raise ValueError(f"bad duration {text!r} (use e.g. 500ms, 8s, 15m, 1h)")
    return int(round(total))


def format_duration_ns(ns: int) -> str:
    if ns % 3_600_000_000_000 == 0:
        return f"{ns // 3_600_000_000_000}h"
    if ns % 60_000_000_000 == 0:
        return f"{ns // 60_000_000_000}m"
    if ns % 1_000_000_000 == 0:
        return f"{ns // 1_000_000_000}s"
    if ns > 1_000_000_000 and ns % 100_000_000 == 0:
        return f"{ns / 1e9:g}s"
    if ns % 1_000_000 == 0:
        return f"{ns // 1_000_000}ms"
    return f"{ns / 1e9:.1f}s" if ns >= 1_000_000_000 else f"{ns / 1e6:.1f}ms"
