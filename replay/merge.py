"""Streaming k-way merge of the parts of every table of one or several tapes.

Order (DESIGN.md "One clock"): time (the table's `time_column`: ts_ns, or
interval_end_ns for syscall tables), then the fixed table order of TABLES, then
`seq` where the table has it, then tape, part and row order. The order is total
and depends only on the tapes' contents, so a replay is deterministic.

Memory is bounded whatever the tape's size:
- a part ("run") is opened only when the merge reaches the smallest time its
  Parquet statistics announce, so only parts that overlap in time are open at
  once (a table's consecutive parts barely overlap: about one per table);
- an open part is read in record batches of BATCH_ROWS rows; columns are decoded
  to Python lists per batch, never row by row through Arrow (merge_chunks, the
  jsonl fast path, keeps Arrow batches of about CHUNK_BYTES of output instead);
- a part whose rows are not already in (time, seq) order (two sources writing
  one table, late eBPF rows) is sorted whole; a part's size is bounded by the
  tape writer's buffer cap (16 MiB of Arrow data per flush).
With several tapes, each tape's times are moved onto the first tape's boottime
axis through the manifests' wall-clock offsets (tapes of different nodes have
unrelated boot clocks); the rows themselves keep their recorded values.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..schemas import TABLES, Table
from .filters import RowFilter

# 2048 rows x ~15 columns of Python objects is ~1.5 MB per open part.
BATCH_ROWS = 2048
# The batched merge holds Arrow data, not Python objects: larger batches amortize
# the per-call cost of Arrow compute. A part is read CHUNK_ROWS rows at a time and
# prepared in slices sized so that a slice's payload is about CHUNK_BYTES (wide
# rows, such as long file paths, get shorter slices).
CHUNK_ROWS = 4096
CHUNK_BYTES = 2 << 20
FIRST_SLICE_ROWS = 1024
TABLE_INDEX = {t.name: i for i, t in enumerate(TABLES)}
NO_SEQ = -1


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


def part_time_bounds(path: Path, time_col: str) -> tuple[int | None, int | None]:
    """Min and max of the time column, from row-group statistics (read the column if absent)."""
    md = pq.read_metadata(path)
    if md.num_rows == 0:
        return None, None
    idx = md.schema.to_arrow_schema().get_field_index(time_col)
    lo = hi = None
    for rg in range(md.num_row_groups):
        col = md.row_group(rg).column(idx)
        st = col.statistics
        if st is None or not st.has_min_max:
            t = pq.read_table(path, columns=[time_col]).column(time_col)
            return pc.min(t).as_py(), pc.max(t).as_py()
        lo = st.min if lo is None else min(lo, st.min)
        hi = st.max if hi is None else max(hi, st.max)
    return lo, hi


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


def _is_sorted(times: np.ndarray, seqs: np.ndarray | None) -> bool:
    if len(times) < 2:
        return True
    d = np.diff(times)
    if seqs is None:
        return bool(np.all(d >= 0))
    return bool(np.all((d > 0) | ((d == 0) & (np.diff(seqs) >= 0))))


def sorted_batches(run: Run, lo: int | None, hi: int | None, rf: RowFilter | None,
                   batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """The part's rows in (time, seq) order, window and filters applied, cast to the
    declared schema (columns the part lacks are NULL), in batches of `batch_rows`."""
    t = run.table
    pf = pq.ParquetFile(run.path)
    present = set(pf.schema_arrow.names)
    cols = [c for c in t.column_names if c in present]
    tc = t.time_column
    has_seq = "seq" in present
    keys = pf.read(columns=[tc, "seq"] if has_seq else [tc])
    times = keys.column(tc).to_numpy()
    seqs = keys.column("seq").to_numpy() if has_seq else None
    del keys
    if _is_sorted(times, seqs):
        source = pf.iter_batches(batch_size=batch_rows, columns=cols)
    else:
        order = np.lexsort((seqs, times)) if has_seq else np.argsort(times, kind="stable")
        source = pf.read(columns=cols).take(pa.array(order)).to_batches(max_chunksize=batch_rows)
    del times, seqs
    lo_l = None if lo is None else lo - run.shift_ns
    hi_l = None if hi is None else hi - run.shift_ns
    schema = t.schema
    for b in source:
        if lo_l is not None or hi_l is not None:
            tcol = b.column(tc)
            m = None
            if lo_l is not None:
                m = pc.greater_equal(tcol, lo_l)
            if hi_l is not None:
                m2 = pc.less(tcol, hi_l)
                m = m2 if m is None else pc.and_(m, m2)
            b = b.filter(m)
        if rf is not None and b.num_rows:
            m = rf.mask(t, b, run.tape_idx)
            if m is not None:
                b = b.filter(m)
        if not b.num_rows:
            continue
        yield _conform(b, schema)


def _conform(b: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    if b.schema.names == schema.names and b.schema.types == schema.types:
        return b
    arrays = []
    for f in schema:
        if f.name in b.schema.names:
            a = b.column(f.name)
            arrays.append(a if a.type == f.type else a.cast(f.type))
        else:
            arrays.append(pa.nulls(b.num_rows, type=f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


class _Cursor:
    """Reads one run batch by batch; exposes the current row's merge key and values."""

    __slots__ = ("run", "_batches", "times", "seqs", "rows", "i", "n", "tidx", "tape_idx", "part_idx", "shift", "orig")

    def __init__(self, run: Run, lo, hi, rf):
        self.run = run
        self._batches = sorted_batches(run, lo, hi, rf)
        self.tidx = run.table_idx
        self.tape_idx = run.tape_idx
        self.part_idx = run.part_idx
        self.shift = run.shift_ns
        self.i = self.n = 0

    def load(self) -> bool:
        for b in self._batches:
            tc = self.run.table.time_column
            self.orig = b.column(tc).to_pylist()
            self.times = [x + self.shift for x in self.orig] if self.shift else self.orig
            self.seqs = b.column("seq").to_pylist() if "seq" in b.schema.names else None
            self.rows = list(zip(*(c.to_pylist() for c in b.columns)))
            self.i, self.n = 0, b.num_rows
            return True
        return False

    def key(self) -> tuple:
        i = self.i
        return (self.times[i], self.tidx, self.seqs[i] if self.seqs is not None else NO_SEQ, self.tape_idx, self.part_idx)


def merge(runs: list[Run], lo: int | None, hi: int | None, rf: RowFilter | None) -> Iterator[tuple[Run, int, tuple]]:
    """Yield (run, recorded time, row values in schema order) in merge order."""
    pending = sorted(runs, key=lambda r: r.low_key)
    pending.reverse()  # pop() from the end gives the next run to open
    heap: list = []
    while True:
        # open every run that may hold a row smaller than the current smallest
        while pending and (not heap or pending[-1].low_key <= heap[0][0]):
            c = _Cursor(pending.pop(), lo, hi, rf)
            if c.load():
                heapq.heappush(heap, (c.key(), c))
        if not heap:
            return
        _, c = heap[0]
        # the top run may emit every row below the next smallest candidate: the
        # second-best heap entry or the next run to open
        bound = None
        if len(heap) > 1:
            bound = heap[1][0] if len(heap) == 2 or heap[1][0] < heap[2][0] else heap[2][0]
        if pending and (bound is None or pending[-1].low_key < bound):
            bound = pending[-1].low_key
        run, times, orig, rows, seqs = c.run, c.times, c.orig, c.rows, c.seqs
        tidx, tape_idx, part_idx = c.tidx, c.tape_idx, c.part_idx
        i, n = c.i, c.n
        if bound is None:
            while i < n:
                yield run, orig[i], rows[i]
                i += 1
        else:
            bt = bound[0]
            while i < n:
                t = times[i]
                if t > bt or (t == bt and (t, tidx, seqs[i] if seqs is not None else NO_SEQ, tape_idx, part_idx) > bound):
                    break
                yield run, orig[i], rows[i]
                i += 1
        c.i = i
        if i >= n and not c.load():
            heapq.heappop(heap)
        else:
            heapq.heapreplace(heap, (c.key(), c))


# -- batched merge ---------------------------------------------------------------
# The same order as merge(), computed per batch with numpy instead of per row
# through a heap: each step takes, from every open part, the rows whose merge key
# is at most the smallest "last buffered key" of the open parts (no row still
# unread can come before them), and orders those rows with one lexsort. The
# payload of each part's batch (e.g. its jsonl lines, as an Arrow array) is
# computed column-wise once, then gathered in merge order: no Python per row.


class _BatchCursor:
    """One run read batch by batch, with its merge keys as numpy arrays."""

    __slots__ = ("run", "_batches", "prepare", "key_tail", "times", "seqs", "payload", "pos", "n", "_rb", "_off",
                 "_rows")

    def __init__(self, run: Run, lo, hi, rf, prepare):
        self.run = run
        self._batches = sorted_batches(run, lo, hi, rf, CHUNK_ROWS)
        self.prepare = prepare
        self.pos = self.n = 0
        self._rb, self._off, self._rows = None, 0, FIRST_SLICE_ROWS

    def _slice(self) -> pa.RecordBatch | None:
        while self._rb is None or self._off >= self._rb.num_rows:
            self._rb, self._off = next(self._batches, None), 0
            if self._rb is None:
                return None
        b = self._rb.slice(self._off, self._rows)
        self._off += b.num_rows
        return b

    def load(self) -> bool:
        b = self._slice()
        if b is not None:
            run = self.run
            times = b.column(run.table.time_column).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
            self.times = times + run.shift_ns if run.shift_ns else times
            if "seq" in b.schema.names:
                self.seqs = pc.fill_null(b.column("seq"), NO_SEQ).to_numpy(zero_copy_only=False).astype(np.int64)
            else:
                self.seqs = None
            self.payload = self.prepare(run, b)
            nbytes = self.payload.nbytes
            if nbytes:
                self._rows = max(64, min(CHUNK_ROWS, b.num_rows * CHUNK_BYTES // nbytes))
            self.pos, self.n = 0, b.num_rows
            i = self.n - 1
            self.key_tail = (int(self.times[i]), run.table_idx, int(self.seqs[i]) if self.seqs is not None else NO_SEQ,
                             run.tape_idx, run.part_idx)
            return True
        return False

    def count_upto(self, bound: tuple) -> int:
        """How many buffered rows from pos on have a merge key <= bound."""
        bt, btidx, bseq, btape, bpart = bound
        times, pos = self.times, self.pos
        a = int(np.searchsorted(times[pos:], bt, "left"))
        b = int(np.searchsorted(times[pos:], bt, "right"))
        if a == b:
            return a
        run = self.run
        tidx = run.table_idx
        if tidx != btidx:
            return b if tidx < btidx else a
        rest_le = (run.tape_idx, run.part_idx) <= (btape, bpart)
        if self.seqs is None:
            return b if NO_SEQ < bseq or (NO_SEQ == bseq and rest_le) else a
        seg = self.seqs[pos + a:pos + b]
        return a + int(np.searchsorted(seg, bseq, "right" if rest_le else "left"))


def merge_chunks(runs: list[Run], lo: int | None, hi: int | None, rf: RowFilter | None, prepare) -> Iterator[pa.Array]:
    """The payloads of all rows in merge order (the order of merge()), a chunk at a time.

    `prepare(run, batch)` returns an Arrow array with one element per row of the
    batch; each yielded chunk is a slice or a gather of those arrays.
    """
    pending = sorted(runs, key=lambda r: r.low_key)
    pending.reverse()
    active: list[_BatchCursor] = []
    while True:
        if not active:
            while pending and not active:
                c = _BatchCursor(pending.pop(), lo, hi, rf, prepare)
                if c.load():
                    active.append(c)
            if not active:
                return
        bound = min(c.key_tail for c in active)
        # a run not yet open may hold rows below the bound: open it (its rows are >= its low key)
        while pending and pending[-1].low_key <= bound:
            c = _BatchCursor(pending.pop(), lo, hi, rf, prepare)
            if c.load():
                active.append(c)
                bound = min(bound, c.key_tail)
        segs = []
        for c in active:
            k = c.count_upto(bound)
            if k:
                segs.append((c, c.pos, k))
        if len(segs) == 1:
            c, pos, k = segs[0]
            yield c.payload.slice(pos, k)
        else:
            n = sum(k for _, _, k in segs)
            times = np.empty(n, np.int64)
            seqs = np.empty(n, np.int64)
            rank = np.empty(n, np.int64)  # (table, tape, part) order of the segment's run
            order_runs = sorted(range(len(segs)), key=lambda s: (segs[s][0].run.table_idx, segs[s][0].run.tape_idx,
                                                                  segs[s][0].run.part_idx))
            tab = np.empty(n, np.int64)
            rowpos = np.empty(n, np.int64)
            at = 0
            for s, (c, pos, k) in enumerate(segs):
                times[at:at + k] = c.times[pos:pos + k]
                seqs[at:at + k] = c.seqs[pos:pos + k] if c.seqs is not None else NO_SEQ
                tab[at:at + k] = c.run.table_idx
                rank[at:at + k] = order_runs.index(s)
                rowpos[at:at + k] = np.arange(k)
                at += k
            # key: time, table order, seq, tape, part (the rank), row order within the part
            order = np.lexsort((rowpos, rank, seqs, tab, times))
            chunk = pa.concat_arrays([c.payload.slice(pos, k) for c, pos, k in segs])
            yield chunk.take(pa.array(order))
        for c, pos, k in segs:
            c.pos = pos + k
        still = []
        for c in active:
            if c.pos < c.n or c.load():
                still.append(c)
        active = still
