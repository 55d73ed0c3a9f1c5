"""Compaction's policy (pure): which consecutive parts of a table merge into one (compact.py).

Tiered by how many flushes a part holds, its "units" (`part-AAAAAA-BBBBBB.parquet`
holds B-A+1): `fan_in` (3) consecutive parts of the same tier (units 1, 3, 9, 27...)
merge into one of the next, and a run that fills the next tier exactly merges at
once (units [3, 3, 1, 1, 1] -> 9: one merge instead of [1, 1, 1] -> 3 then
[3, 3, 3] -> 9; an idle node's merges a third fewer, the same parts on disk or
fewer at every moment), as long as the result holds at most `max_units` flushes
and `max_bytes` of input. docs/compaction.md has why these numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from nodetape.tape.retention import PartInfo

FAN_IN = 3
# the newest row of a part decides its retirement: a part spans at most this share of the window
WINDOW_SHARE = 5
# without a window: parts of at most 10 minutes of flushes
DEFAULT_MAX_SPAN_NS = 600_000_000_000
# inputs of one merge, on disk (zstd Parquet; in memory they are a few times larger)
MAX_INPUT_BYTES = 8 << 20


@dataclass(frozen=True)
class Policy:
    fan_in: int = FAN_IN
    max_units: int = 81
    max_bytes: int = MAX_INPUT_BYTES

    @classmethod
    def for_window(cls, flush_ns: int, retain_ns: int | None) -> Policy:
        span = retain_ns // WINDOW_SHARE if retain_ns else DEFAULT_MAX_SPAN_NS
        return cls(max_units=max(1, span // max(1, flush_ns)))


def units(p: PartInfo) -> int:
    """How many flushes a part holds."""
    return p.end - p.index + 1


def tier(n: int, fan_in: int) -> int:
    """floor(log_fan_in(n)): 1 -> 0, 3 -> 1, 9 -> 2 for fan_in 3."""
    t = 0
    while n >= fan_in:
        n //= fan_in
        t += 1
    return t


def _mergeable(run: list[PartInfo], policy: Policy) -> bool:
    if len({tier(units(p), policy.fan_in) for p in run}) != 1:
        return False
    if any(b.index != a.end + 1 for a, b in zip(run, run[1:])):
        return False  # a range name claims every index between its ends
    return (sum(units(p) for p in run) <= policy.max_units
            and sum(p.bytes for p in run) <= policy.max_bytes)


def _cascade(parts: list[PartInfo], i: int, policy: Policy) -> list[PartInfo] | None:
    """The run from `i` that fills the next tier exactly, e.g. units [3, 3, 1, 1, 1] -> 9: what
    the same-tier rule reaches in two merges ([1, 1, 1] -> 3, then [3, 3, 3] -> 9), in one."""
    target = policy.fan_in ** (tier(units(parts[i]), policy.fan_in) + 1)
    if target > policy.max_units:
        return None  # a top-tier part: nothing to fill
    total, j = 0, i
    while j < len(parts) and total < target:
        if j > i and (units(parts[j]) > units(parts[j - 1]) or parts[j].index != parts[j - 1].end + 1):
            return None  # newer parts are never larger; a range name claims every index between its ends
        total += units(parts[j])
        j += 1
    run = parts[i:j]
    if total != target or len(run) < 2 or total > policy.max_units or sum(p.bytes for p in run) > policy.max_bytes:
        return None
    return run


def plan(parts: list[PartInfo], policy: Policy) -> list[list[PartInfo]]:
    """Groups of consecutive parts of one table to merge, oldest first, none sharing a part:
    a run that fills the next tier (`_cascade`), else `fan_in` parts of one tier."""
    groups: list[list[PartInfo]] = []
    k = policy.fan_in
    i = 0
    while i + 1 < len(parts):
        run = _cascade(parts, i, policy)
        if run is None and i + k <= len(parts) and _mergeable(parts[i:i + k], policy):
            run = parts[i:i + k]
        if run is not None:
            groups.append(run)
            i += len(run)
        else:
            i += 1
    return groups
