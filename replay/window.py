"""Time bounds of a replay: `--from`/`--to` as the user writes them -> boottime ns.

Accepted forms (one axis: CLOCK_BOOTTIME of the first tape, DESIGN.md "One clock"):
- `+5s`, `+1m30s`: relative to the tape's start (manifest start_ns);
- `123456789012`: an absolute boottime in nanoseconds, as in the `ts_ns` columns;
- `2024-05-01T12:00:03.5Z` (ISO 8601): wall time, converted through every clock
  pair of the manifest with the rule the views' `ts` columns use
  (nodetape/tape/clockmap.py), so a `ts` copied from `nodetape sql` finds its row
  after an NTP step too; a time without a zone is UTC, like the `ts` columns.

A bound must fit the int64 nanoseconds of the `ts_ns` columns (years 1678-2262).

The window is half-open, [from, to): consecutive slices never share a row.
"""

from __future__ import annotations

import datetime as dt
import re

from nodetape.core.durations import parse_duration_ns
from nodetape.tape.clockmap import Pairs, wall_to_boot

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def parse_time(text: str | int | dt.datetime, *, start_ns: int, pairs: Pairs, option: str = "time") -> int:
    """One bound -> boottime ns; ValueError with a one-line message naming `option`."""
    ns = _parse(text, start_ns=start_ns, pairs=pairs, option=option)
    if not INT64_MIN <= ns <= INT64_MAX:
        raise ValueError(f"{option} {str(text)[:60]!r}: out of range (times are int64 nanoseconds, years 1678-2262)")
    return ns


def _parse(text, *, start_ns: int, pairs: Pairs, option: str) -> int:
    if isinstance(text, bool):
        raise ValueError(f"{option}: expected a time, got {text!r}")
    if isinstance(text, int):
        return text
    if isinstance(text, dt.datetime):
        return _wall_to_boot(text, pairs)
    s = str(text).strip()
    if s.startswith("+"):
        try:
            return start_ns + parse_duration_ns(s[1:])
        except ValueError as e:
            raise ValueError(f"{option} {s!r}: {e}") from None
    if re.fullmatch(r"\d+", s):
        return int(s)
    try:
        when = dt.datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(
            f"{option} {s!r}: expected +DURATION from the tape's start (+5s), boottime ns, or ISO wall time"
        ) from None
    return _wall_to_boot(when, pairs)


def _wall_to_boot(when: dt.datetime, pairs: Pairs) -> int:
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    delta = when - _EPOCH
    wall_ns = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000
    return wall_to_boot(wall_ns, pairs)
