"""Parts as merge inputs ("runs"): their time bounds, and their rows in order, read lazily.

Bounded resources whatever the tape holds (tapes are untrusted, DESIGN.md 6):
- at most MAX_OPEN part files are open at once, whatever the number of parts
  that overlap in time (a crafted tape of 100k parts all covering the same
  second): a reader whose file was closed to make room re-opens it and skips
  to where it was;
- rows are decoded in batches of a bounded number of rows, so a footer that
  claims billions of rows never turns into one giant allocation; the key
  columns are checked for order batch by batch too;
- a part whose rows are not in (time, seq) order (two sources writing one
  table, late eBPF rows) is sorted whole; its size is bounded by the tape
  writer's buffer cap (16 MiB of Arrow data per flush).
A part whose pages cannot be decoded is a TapeError naming it (exit 2).
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from nodetape.core.errors import TapeError
from ..schemas import TABLES, Table, conform
from .filters import RowFilter

TABLE_INDEX = {t.name: i for i, t in enumerate(TABLES)}
NO_SEQ = -1
# rows decoded per read: 4096 rows of the widest table are a few MB of Arrow data
READ_ROWS = 4096
# a part of at most this many rows is read whole (a few MB at most)
SMALL_PART_ROWS = 16384
# part files open at once (far below the usual 1024 descriptors per process)
MAX_OPEN = 64


@dataclass
class Run:
    """One Parquet part of one table of one tape."""

    tape_idx: int
    table: Table
    part_idx: int
    path: Path
    shift_ns: int  # added to this tape's times to put them on the merge axis
    tmin: int | None  # merge-axis time bounds from Parquet statistics
    tmax: int | None

    @property
    def table_idx(self) -> int:
        return TABLE_INDEX[self.table.name]

    @property
    def low_key(self) -> tuple:
        return (self.tmin, self.table_idx, NO_SEQ - 1, self.tape_idx, self.part_idx)


def part_error(path: Path, e: BaseException) -> TapeError:
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return TapeError(f"{path}: corrupt Parquet part ({first})", str(path))


def part_time_bounds(path: Path, time_col: str) -> tuple[int | None, int | None]:
    """Min and max of the time column, from row-group statistics (read the column if absent)."""
    try:
        md = pq.read_metadata(path)
        if md.num_rows == 0:
            return None, None
        idx = md.schema.to_arrow_schema().get_field_index(time_col)
        lo = hi = None
        for rg in range(md.num_row_groups):
            st = md.row_group(rg).column(idx).statistics
            if st is None or not st.has_min_max:
                lo = hi = None
                for b in pq.ParquetFile(path).iter_batches(batch_size=READ_ROWS, columns=[time_col]):
                    t = b.column(0)
                    if len(t) - t.null_count:
                        lo = pc.min(t).as_py() if lo is None else min(lo, pc.min(t).as_py())
                        hi = pc.max(t).as_py() if hi is None else max(hi, pc.max(t).as_py())
                return lo, hi
            lo = st.min if lo is None else min(lo, st.min)
            hi = st.max if hi is None else max(hi, st.max)
        return lo, hi
    except (pa.ArrowException, OSError) as e:
        raise part_error(path, e) from None


def make_runs(tapes, tables: list[Table], shifts: list[int], lo: int | None, hi: int | None) -> list[Run]:
    """Every part of the selected tables that may hold rows in [lo, hi) (merge axis)."""
    runs = []
    for ti, tape in enumerate(tapes):
        for t in tables:
            for pi, path in enumerate(tape.parts.get(t.name, [])):
                tmin, tmax = part_time_bounds(path, t.time_column)
                if tmin is None:
                    continue
                tmin += shifts[ti]
                tmax += shifts[ti]
                if (lo is not None and tmax < lo) or (hi is not None and tmin >= hi):
                    continue
                runs.append(Run(ti, t, pi, path, shifts[ti], tmin, tmax))
    return runs


class _OpenFiles:
    """At most MAX_OPEN open (ParquetFile, batch iterator) pairs, least recently used closed first."""

    def __init__(self):
        self._open: OrderedDict[int, tuple] = OrderedDict()

    def get(self, key: int):
        got = self._open.get(key)
        if got is not None:
            self._open.move_to_end(key)
        return got

    def put(self, key: int, pf, it) -> None:
        self._open[key] = (pf, it)
        while len(self._open) > MAX_OPEN:
            self.drop(next(iter(self._open)))

    def drop(self, key: int) -> None:
        got = self._open.pop(key, None)
        if got is not None:
            got[1].close()
            got[0].close()


_FILES = _OpenFiles()
_KEYS = itertools.count()


class _PartReader:
    """Batches of a part's columns from row `pos` on, re-opening the file if it was closed."""

    def __init__(self, path: Path, columns: list[str], batch_rows: int):
        self.path, self.columns, self.batch_rows = path, columns, batch_rows
        self.pos = 0
        self.key = next(_KEYS)

    def next(self) -> pa.RecordBatch | None:
        got = _FILES.get(self.key)
        skip = 0
        if got is None:
            pf = pq.ParquetFile(self.path)
            starts = np.cumsum([0] + [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)])
            rg = int(np.searchsorted(starts, self.pos, "right")) - 1
            skip = self.pos - int(starts[rg])
            it = pf.iter_batches(batch_size=self.batch_rows, columns=self.columns,
                                 row_groups=range(rg, pf.num_row_groups))
            _FILES.put(self.key, pf, it)
            got = (pf, it)
        for b in got[1]:
            if skip >= b.num_rows:
                skip -= b.num_rows
                continue
            b = b.slice(skip)
            self.pos += b.num_rows
            return b
        self.close()
        return None

    def close(self) -> None:
        _FILES.drop(self.key)


def _keys_sorted(path: Path, tc: str, has_seq: bool) -> bool:
    """Whether the part's rows are in (time, seq) order, read a batch at a time."""
    reader = _PartReader(path, [tc, "seq"] if has_seq else [tc], READ_ROWS * 16)
    last = None
    try:
        while (b := reader.next()) is not None:
            if b.column(0).null_count or (has_seq and b.column(1).null_count):
                raise TapeError(f"{path}: NULL in {tc if b.column(0).null_count else 'seq'}, a column that is "
                                "never NULL (a damaged or forged part)", str(path))
            times = b.column(0).to_numpy(zero_copy_only=False)
            seqs = b.column(1).to_numpy(zero_copy_only=False) if has_seq else None
            if last is not None and (times[0] < last[0] or (has_seq and times[0] == last[0] and seqs[0] < last[1])):
                return False
            d = np.diff(times)
            if len(d) and not (np.all(d >= 0) if seqs is None else np.all((d > 0) | ((d == 0) & (np.diff(seqs) >= 0)))):
                return False
            last = (times[-1], seqs[-1] if has_seq else None)
        return True
    finally:
        reader.close()


def _sort(whole: pa.Table, tc: str, has_seq: bool) -> pa.Table:
    if whole.column(tc).null_count or (has_seq and whole.column("seq").null_count):
        raise ValueError(f"NULL in {tc if whole.column(tc).null_count else 'seq'}, a column that is never NULL")
    times = whole.column(tc).to_numpy()
    if has_seq:
        seqs = whole.column("seq").to_numpy()
        d = np.diff(times)
        if np.all((d > 0) | ((d == 0) & (np.diff(seqs) >= 0))):
            return whole
        return whole.take(pa.array(np.lexsort((seqs, times))))
    if np.all(np.diff(times) >= 0):
        return whole
    return whole.take(pa.array(np.argsort(times, kind="stable")))


def _ordered(run: Run, cols: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
    tc = run.table.time_column
    has_seq = "seq" in cols
    with pq.ParquetFile(run.path) as pf:
        small = pf.metadata.num_rows <= SMALL_PART_ROWS
        whole = pf.read(columns=cols) if small else None
    if small:  # read at once, file closed at once: thousands of small parts cost no descriptors
        try:
            yield from _sort(whole, tc, has_seq).to_batches(max_chunksize=batch_rows)
        except ValueError as e:
            raise TapeError(f"{run.path}: {e} (a damaged or forged part)", str(run.path)) from None
        return
    if _keys_sorted(run.path, tc, has_seq):
        reader = _PartReader(run.path, cols, batch_rows)
        try:
            while (b := reader.next()) is not None:
                yield b
        finally:
            reader.close()
        return
    with pq.ParquetFile(run.path) as pf:
        whole = pf.read(columns=cols)
    yield from _sort(whole, tc, has_seq).to_batches(max_chunksize=batch_rows)


def _window(b: pa.RecordBatch, tc: str, lo_l: int | None, hi_l: int | None) -> pa.RecordBatch:
    if lo_l is None and hi_l is None:
        return b
    tcol = b.column(tc)
    m = None if lo_l is None else pc.greater_equal(tcol, lo_l)
    if hi_l is not None:
        m2 = pc.less(tcol, hi_l)
        m = m2 if m is None else pc.and_(m, m2)
    return b.filter(m)


def sorted_batches(run: Run, lo: int | None, hi: int | None, rf: RowFilter | None,
                   batch_rows: int = READ_ROWS) -> Iterator[pa.RecordBatch]:
    """The part's rows in (time, seq) order, window and filters applied, conformed to the
    declared schema (columns the part lacks are NULL), in batches of at most `batch_rows`."""
    t = run.table
    lo_l = None if lo is None else lo - run.shift_ns
    hi_l = None if hi is None else hi - run.shift_ns
    try:
        present = set(pq.read_schema(run.path).names)
        cols = [c for c in t.column_names if c in present]
        for b in _ordered(run, cols, batch_rows):
            b = _window(b, t.time_column, lo_l, hi_l)
            if rf is not None and b.num_rows:
                m = rf.mask(t, b, run.tape_idx)
                if m is not None:
                    b = b.filter(m)
            if b.num_rows:
                yield conform(t.name, b)
    except (pa.ArrowException, OSError) as e:
        raise part_error(run.path, e) from None
