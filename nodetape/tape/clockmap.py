"""Boottime <-> wall time through every clock pair of a manifest (pure functions).

A manifest keeps clock pairs (CLOCK_BOOTTIME, CLOCK_REALTIME) whenever the wall
clock moved against boottime (an NTP step; tape/format.py add_clock_pair). The
SQL views date a row with the offset of the nearest preceding pair, the first
pair's for rows before it (reader.py `Tape.offset_sql`: a CASE over pairs[1:],
ELSE pairs[0]). These functions apply that same piecewise rule, so a `ts` copied
from `nodetape sql` converts back to the boottime of the row it came from:

    wall(boot) = boot + offset_k   for pairs[k].boot <= boot < pairs[k+1].boot
                                   (k = 0 also covers every boot before pairs[1])

After a forward step some wall times are never shown; after a backward step some
are shown twice. `wall_to_boot(W)` is the first boottime whose wall time is W or
later: the moment the wall clock first read W, which is what `--from W` means.
"""

from __future__ import annotations

from collections.abc import Sequence

Pairs = Sequence[tuple[int, int]]  # (boottime_ns, realtime_ns - boottime_ns), sorted by boottime


def clock_pairs(clock: dict) -> list[tuple[int, int]]:
    """(boottime_ns, offset_ns) sorted by boottime from a manifest's `clock`, as the views use them."""
    snaps = clock.get("snapshots") or []
    pairs = sorted((int(b), int(r) - int(b)) for b, r in snaps)
    return pairs or [(0, int(clock["offset_ns"]))]


def offset_at(boot_ns: int, pairs: Pairs) -> int:
    """realtime - boottime in effect at boot_ns."""
    off = pairs[0][1]
    for b, o in pairs[1:]:
        if boot_ns >= b:
            off = o
        else:
            break
    return off


def boot_to_wall(boot_ns: int, pairs: Pairs) -> int:
    """Wall-clock ns since the epoch of a boottime, as the views' `ts` columns give it (before
    their truncation to microseconds)."""
    return boot_ns + offset_at(boot_ns, pairs)


def wall_to_boot(wall_ns: int, pairs: Pairs) -> int:
    """The first boottime whose wall time (boot_to_wall) is at or after wall_ns."""
    for k, (_, off) in enumerate(pairs):
        start = pairs[k][0] if k else None  # segment 0 reaches back without limit
        end = pairs[k + 1][0] if k + 1 < len(pairs) else None
        boot = wall_ns - off
        if start is not None and boot < start:
            boot = start
        if end is None or boot < end:
            return boot
    raise AssertionError("unreachable: the last segment has no end")


def offset_sql(column: str, pairs: Pairs) -> str:
    """SQL for realtime - boottime of `column` (already quoted): a constant for one offset, else a
    CASE over pairs[1:] (the nearest preceding pair; pairs[0] before them), as offset_at computes it."""
    if len({o for _, o in pairs}) == 1:
        return str(pairs[0][1])
    whens = " ".join(f"WHEN {column} >= {b} THEN {o}" for b, o in reversed(pairs[1:]))
    return f"(CASE {whens} ELSE {pairs[0][1]} END)"


def offset_sql_by_tape(column: str, tape_pairs: Sequence[Pairs], tape_col: str = "f._tape",
                       first_offset_col: str = "f._off") -> str:
    """SQL for realtime - boottime of `column` over rows of many tapes: `first_offset_col` holds each row's
    tape's first offset, and a CASE on `tape_col` (the tape's position in tape_pairs) only for tapes
    whose clock moved. The one rule of the tape views, the store views and Spark's."""
    whens = [f"WHEN {tape_col} = {i} THEN {offset_sql(column, pairs)}"
             for i, pairs in enumerate(tape_pairs) if len({o for _, o in pairs}) > 1]
    return f"(CASE {' '.join(whens)} ELSE {first_offset_col} END)" if whens else first_offset_col
