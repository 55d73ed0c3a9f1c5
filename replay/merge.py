"""The one streaming k-way merge of the parts of every table of one or several tapes.

Order (DESIGN.md "One clock"): time (the table's `time_column`: ts_ns, or
interval_end_ns for syscall tables), then the fixed table order of TABLES, then
`seq` where the table has it, then tape, part and row order. The order is total
and depends only on the tapes' contents, so a replay is deterministic.

One algorithm, computed per batch with numpy: each step takes, from every open
part, the rows whose merge key is at most the smallest "last buffered key" of
the open parts (no row still unread can come before them), and orders those
rows with one lexsort. What travels through the merge is a per-batch payload
(`prepare(run, batch)`, one element per row, e.g. the rows' jsonl lines) gathered
in merge order: `merge_chunks`. `merge` is the same merge with row handles as
payload, for consumers that need each row's values (pacing, --into, the API).

Memory is bounded whatever the tape's size: a part ("run") is opened only when
the merge reaches the smallest time its Parquet statistics announce, it is read
in slices of about CHUNK_BYTES of payload, and parts.py bounds open files.
With several tapes, each tape's times are moved onto the first tape's boottime
axis through the manifests' wall-clock offsets (tapes of different nodes have
unrelated boot clocks); the rows themselves keep their recorded values.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .filters import RowFilter
from .parts import NO_SEQ, Run, make_runs, part_time_bounds, sorted_batches

# A part is read CHUNK_ROWS rows at a time and prepared in slices sized so that a
# slice's payload is about CHUNK_BYTES (wide rows, such as long file paths, get
# shorter slices); the first slice is small so that a paced replay starts at once.
CHUNK_ROWS = 4096
CHUNK_BYTES = 2 << 20
FIRST_SLICE_ROWS = 1024

__all__ = ["Run", "make_runs", "merge", "merge_chunks", "part_time_bounds", "sorted_batches"]


class _BatchCursor:
    """One run read batch by batch, with its merge keys as numpy arrays."""

    __slots__ = ("run", "_batches", "prepare", "key_tail", "times", "seqs", "payload", "pos", "n", "_rb", "_off",
                 "_rows", "tail_id")

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
        if b is None:
            return False
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


def _gather(segs: list[tuple[_BatchCursor, int, int]]) -> pa.Array:
    """The payloads of several runs' segments, in merge order."""
    if len(segs) == 1:
        c, pos, k = segs[0]
        return c.payload.slice(pos, k)
    n = sum(k for _, _, k in segs)
    times, seqs, tab, rank, rowpos = (np.empty(n, np.int64) for _ in range(5))
    # (table, tape, part) order of each segment's run
    order_runs = sorted(range(len(segs)), key=lambda s: (segs[s][0].run.table_idx, segs[s][0].run.tape_idx,
                                                          segs[s][0].run.part_idx))
    run_rank = [0] * len(segs)
    for r, s in enumerate(order_runs):
        run_rank[s] = r
    at = 0
    for s, (c, pos, k) in enumerate(segs):
        times[at:at + k] = c.times[pos:pos + k]
        seqs[at:at + k] = c.seqs[pos:pos + k] if c.seqs is not None else NO_SEQ
        tab[at:at + k] = c.run.table_idx
        rank[at:at + k] = run_rank[s]
        rowpos[at:at + k] = np.arange(k)
        at += k
    # key: time, table order, seq, tape, part (the rank), row order within the part
    order = np.lexsort((rowpos, rank, seqs, tab, times))
    chunk = pa.concat_arrays([c.payload.slice(pos, k) for c, pos, k in segs])
    return chunk.take(pa.array(order))


def _head(c: _BatchCursor) -> tuple:
    """The merge key of the cursor's next buffered row."""
    run, i = c.run, c.pos
    return (int(c.times[i]), run.table_idx, int(c.seqs[i]) if c.seqs is not None else NO_SEQ,
            run.tape_idx, run.part_idx)


class _Active:
    """The open cursors, as two heaps: by next row (who has rows at or below a bound) and by last
    buffered row (the bound); so a step costs O(log n) per cursor it touches, not O(n) for all."""

    def __init__(self):
        self.heads: list = []
        self.tails: list = []
        self.n = 0
        self._ids = itertools.count()

    def add(self, c: _BatchCursor) -> None:
        """A cursor with a freshly loaded buffer."""
        c.tail_id = next(self._ids)
        heapq.heappush(self.heads, (_head(c), c.tail_id, c))
        heapq.heappush(self.tails, (c.key_tail, c.tail_id, c))
        self.n += 1

    def bound(self) -> tuple:
        while self.tails[0][1] != self.tails[0][2].tail_id:
            heapq.heappop(self.tails)  # a buffer since replaced or finished
        return self.tails[0][0]

    def upto(self, bound: tuple) -> list[_BatchCursor]:
        """Pop the cursors whose next row is at or below bound."""
        out = []
        while self.heads and self.heads[0][0] <= bound:
            out.append(heapq.heappop(self.heads)[2])
        return out

    def back(self, c: _BatchCursor, reloaded: bool) -> None:
        if reloaded:
            self.n -= 1
            self.add(c)
        else:
            heapq.heappush(self.heads, (_head(c), c.tail_id, c))

    def done(self, c: _BatchCursor) -> None:
        c.tail_id = -1
        self.n -= 1


def merge_chunks(runs: list[Run], lo: int | None, hi: int | None, rf: RowFilter | None, prepare) -> Iterator[pa.Array]:
    """The payloads of all rows in merge order, a chunk at a time.

    `prepare(run, batch)` returns an Arrow array with one element per row of the
    batch; each yielded chunk is a slice or a gather of those arrays.
    """
    pending = sorted(runs, key=lambda r: r.low_key)
    pending.reverse()  # pop() from the end gives the next run to open
    active = _Active()
    while True:
        while pending and not active.n:
            c = _BatchCursor(pending.pop(), lo, hi, rf, prepare)
            if c.load():
                active.add(c)
        if not active.n:
            return
        # a run not yet open may hold rows below the bound: open it (its rows are >= its low key)
        while pending and pending[-1].low_key <= active.bound():
            c = _BatchCursor(pending.pop(), lo, hi, rf, prepare)
            if c.load():
                active.add(c)
        bound = active.bound()
        segs = [(c, c.pos, c.count_upto(bound)) for c in active.upto(bound)]
        yield _gather(segs)
        for c, pos, k in segs:
            c.pos = pos + k
            if c.pos < c.n:
                active.back(c, False)
            elif c.load():
                active.back(c, True)
            else:
                active.done(c)


class _Held:
    """Decoded rows of the prepared slices, until the merge has emitted each of them."""

    def __init__(self, encode):
        self.encode = encode
        self.slices: dict[int, list] = {}
        self._tokens = itertools.count()

    def prepare(self, run: Run, b: pa.RecordBatch) -> pa.Array:
        token = next(self._tokens)
        rows = list(zip(*(c.to_pylist() for c in b.columns)))
        self.slices[token] = [run, b.column(run.table.time_column).to_pylist(), rows, b.num_rows]
        handles = pa.array(np.arange(b.num_rows, dtype=np.int64) + (token << 32))
        if self.encode is None:
            return handles
        return pa.StructArray.from_arrays([handles, self.encode(run, b)], names=["h", "line"])

    def take(self, handle: int) -> tuple[Run, int, tuple]:
        token, i = handle >> 32, handle & 0xFFFFFFFF
        entry = self.slices[token]
        entry[3] -= 1
        if not entry[3]:
            del self.slices[token]
        return entry[0], entry[1][i], entry[2][i]


def merge(runs: list[Run], lo: int | None, hi: int | None, rf: RowFilter | None,
          encode=None) -> Iterator[tuple]:
    """(run, recorded time, row values in schema order) in merge order; with `encode(run, batch)`
    (an encoder of per-row text, e.g. jsonl.BatchEncoder) each tuple also carries the row's text."""
    held = _Held(encode)
    for chunk in merge_chunks(runs, lo, hi, rf, held.prepare):
        if encode is None:
            for h in chunk.to_numpy().tolist():
                yield held.take(h)
        else:
            handles, lines = chunk.flatten()  # flatten, not field(): a slice's offset applies
            for h, line in zip(handles.to_numpy().tolist(), lines.to_pylist()):
                yield (*held.take(h), line)
