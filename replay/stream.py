"""The replay API: open tapes, choose a window and filters, iterate events in order.

    from nodetape import replay
    for ev in replay.open("/tmp/tape").events(from_="+5s", tables=["cgroup_events"]):
        print(ev.table, ev.time_ns, ev.row["kind"], ev.row["cgroup_path"])
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from nodetape.core.errors import UserError
from ..schemas import TABLE_NAMES, TABLES, Table
from nodetape.tape.clockmap import clock_pairs
from nodetape.tape.reader import Tape, open_tapes
from .filters import RowFilter, build_id_maps, table_can_match
from .merge import Run, make_runs, merge, merge_chunks
from .window import parse_time

TimeSpec = str | int | dt.datetime | None


class Event(NamedTuple):
    """One row of one table: `row` maps every column of the table's schema, in schema order."""

    table: str
    time_ns: int
    row: dict
    host: str | None = None


@dataclass(frozen=True)
class Selection:
    """A resolved replay request: what the merge reads."""

    tables: tuple[Table, ...]
    lo: int | None  # merge-axis boottime ns, inclusive
    hi: int | None  # exclusive
    start_ns: int  # where the window starts (pacing anchor): lo, else the tape's start
    rf: RowFilter | None


def _split_tables(tables: str | Iterable[str] | None) -> list[str] | None:
    if tables is None:
        return None
    names = [n.strip() for n in tables.split(",")] if isinstance(tables, str) else [str(n).strip() for n in tables]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in TABLE_NAMES]
    if unknown:
        raise UserError(f"--tables: unknown table(s) {', '.join(unknown)} (tables: {', '.join(TABLE_NAMES)})")
    return names


class Replay:
    """One or several opened tapes, replayable in a deterministic order."""

    def __init__(self, tapes: Sequence[Tape]):
        if not tapes:
            raise UserError("replay: no tape given")
        self.tapes = list(tapes)
        base = self.tapes[0].offset_ns
        # other tapes' boottimes onto the first tape's axis, through wall time
        self.shifts = [t.offset_ns - base for t in self.tapes]
        self.hosts = [t.host for t in self.tapes] if len(self.tapes) > 1 else [None]

    @property
    def manifest(self) -> dict:
        return self.tapes[0].manifest

    @property
    def start_ns(self) -> int:
        """Earliest start of the tapes, on the merge axis."""
        return min(int(t.manifest.get("start_ns") or 0) + s for t, s in zip(self.tapes, self.shifts))

    @property
    def end_ns(self) -> int | None:
        ends = [t.manifest.get("end_ns") or t.manifest.get("last_flush_ns") for t in self.tapes]
        if any(e is None for e in ends):
            return None
        return max(int(e) + s for e, s in zip(ends, self.shifts))

    def time(self, spec: TimeSpec, option: str = "time") -> int | None:
        if spec is None:
            return None
        try:
            return parse_time(spec, start_ns=self.start_ns, pairs=clock_pairs(self.tapes[0].manifest["clock"]),
                              option=option)
        except ValueError as e:
            raise UserError(str(e)) from None

    def select(self, from_: TimeSpec = None, to: TimeSpec = None, tables=None, cgroup: str | None = None,
               pod: str | None = None, restrict_to: Iterable[str] | None = None) -> Selection:
        names = _split_tables(tables)
        chosen = [t for t in TABLES if names is None or t.name in names]
        if restrict_to is not None:
            keep = set(restrict_to)
            chosen = [t for t in chosen if t.name in keep]
        rf = None
        if cgroup or pod:
            rf = RowFilter(cgroup_glob=cgroup or None, pod_uid=pod or None)
            chosen = [t for t in chosen if table_can_match(t)]
            if any("cgroup_id" in t.column_names for t in chosen):
                # per tape: cgroup ids of different nodes are unrelated numbers that may collide
                for i, tape in enumerate(self.tapes):
                    parts = [p for n in ("cgroup_events", "cgroup_samples") for p in tape.parts.get(n, [])]
                    rf.id_paths[i], rf.id_pods[i] = build_id_maps(parts)
        lo, hi = self.time(from_, "--from"), self.time(to, "--to")
        if lo is not None and hi is not None and hi <= lo:
            raise UserError(f"--to: the window is empty (--to {to} is not after --from {from_})")
        return Selection(tuple(chosen), lo, hi, lo if lo is not None else self.start_ns, rf)

    def select_tables(self, sel: Selection, names: Iterable[str]) -> Selection:
        """The same selection narrowed to the tables `names`."""
        keep = set(names)
        return dataclasses.replace(sel, tables=tuple(t for t in sel.tables if t.name in keep))

    def runs(self, sel: Selection) -> list[Run]:
        return make_runs(self.tapes, list(sel.tables), self.shifts, sel.lo, sel.hi)

    def rows(self, sel: Selection) -> Iterator[tuple[Run, int, tuple]]:
        """(run, recorded time, values) in merge order: the fast path the sinks use."""
        return merge(self.runs(sel), sel.lo, sel.hi, sel.rf)

    def rows_with_text(self, sel: Selection, encode) -> Iterator[tuple[Run, int, tuple, str]]:
        """rows() with each row's text from `encode(run, batch)` (e.g. its jsonl line)."""
        return merge(self.runs(sel), sel.lo, sel.hi, sel.rf, encode)

    def chunks(self, sel: Selection, prepare) -> Iterator:
        """`prepare(run, batch)` arrays (one element per row) gathered in merge order, a chunk at a
        time: the column-wise fast path of the jsonl sink (same order as rows())."""
        return merge_chunks(self.runs(sel), sel.lo, sel.hi, sel.rf, prepare)

    def events(self, from_: TimeSpec = None, to: TimeSpec = None, tables=None, cgroup: str | None = None,
               pod: str | None = None) -> Iterator[Event]:
        """Events in [from_, to), in (time, table order, seq) order; see docs/replay.md."""
        sel = self.select(from_, to, tables, cgroup, pod)
        hosts = self.hosts
        for run, t, vals in self.rows(sel):
            yield Event(run.table.name, t, dict(zip(run.table.column_names, vals)), hosts[run.tape_idx] if len(hosts) > 1 else None)


def open(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> Replay:  # noqa: A001 - mirrors a file API
    """Open one tape (a path) or several (a list of paths) for replay."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if paths and all(isinstance(p, Tape) for p in paths):
        return Replay(list(paths))  # already opened (a fleet store's tapes, nodetape/store/reader.py)
    return Replay(open_tapes([Path(p) for p in paths]))
