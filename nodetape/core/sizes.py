"""Byte sizes as written on the command line: 500M, 2G, 64k, 1048576 (binary units)."""

from __future__ import annotations

import re

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?")


def parse_size(text: str) -> int:
    """'500M' -> 524288000; ValueError naming the text otherwise. K/M/G/T are powers of 1024."""
    s = text.strip().lower()
    m = _SIZE.fullmatch(s)
    if not m:
        raise ValueError(f"bad size {text!r} (use e.g. 500M, 2G, 64K)")
    return int(float(m.group(1)) * _UNITS[m.group(2)])
