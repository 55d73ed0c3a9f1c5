"""Compaction: a live tape's small parts merged into fewer, time-sorted ones.

A recorder flushes every table every 2 s, so a 15-minute window holds ~450
parts per table, and opening the tape reads ~450 footers per table. Compaction
merges sealed parts in the background (issue 15).

Policy (`Policy`, `plan`, pure: tiers.py): tiered by how many flushes a part holds, its
"units" (`part-AAAAAA-BBBBBB.parquet` holds B-A+1). `fan_in` (3) consecutive
parts of the same tier (units 1, 3, 9, 27...) merge into one of the next (a run
that fills the next tier, e.g. [3, 3, 1, 1, 1], at once), as
long as the result holds at most `max_units` flushes (a fifth of the retention
window: a part retires whole when its newest row leaves the window, so the
window overshoots by at most that, the rule Prometheus' TSDB follows with its
10%) and `max_bytes` of input (the merge is done in memory). At 2 s flushes and
--retain 15m: tiers 1, 3, 9, 27, 81 units; at most 2 parts wait in each lower
tier, and ~6 parts of 81 flushes (162 s) cover the rest: <= 16 parts per table
(measured: docs/compaction.md, BENCHMARKS.md).

Atomicity, step by step (`merge` on the compactor's thread, `install` on the
writer's):
1. the merged rows, sorted by (time, seq), are written under a hidden temp
   name and fsynced (a SIGKILL leaves a temp file readers ignore);
2. renamed to `part-AAAAAA-BBBBBB.parquet` and the folder fsynced: from here a
   folder listing shows it *instead of* its inputs (retention.visible_parts),
   while the manifest still names the inputs, which are all still on disk;
3. the ledger names it in their place; the writer's next manifest rewrite
   (one, at the flush) makes that durable;
4. the inputs are unlinked a grace period after that rewrite, like retired
   parts, so a reader that listed them a moment before can finish.
At no point does the manifest name a missing file, nor does a listing count a
row twice. If retention retired an input while the merge ran, the result is
dropped (unlinked before it was ever renamed).

Row groups hold `ROW_GROUP_ROWS` rows, sorted by time, so DuckDB skips row
groups by their ts_ns statistics in `WHERE ts_ns > ...` and `--from/--to`.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from nodetape.schemas import table as table_of
from nodetape.tape.fs import fsync_dir
from nodetape.tape.partfile import LEAN_ROWS, blake2b_hex, parquet_options, part_schema, tight_dictionaries
from nodetape.tape.partfile import write_file as _write_file
from nodetape.tape.retention import PartInfo
from nodetape.tape.tiers import FAN_IN, Policy, plan, tier, units  # noqa: F401 - the policy, re-exported

# rows per row group of a compacted part: of 1K, 4K, 16K, 128K and 1M rows, 16K made the
# fastest 10 s time-range query, a small footer and a 1 ms footer check (docs/compaction.md)
ROW_GROUP_ROWS = 16384
# a part of at most this many rows stays in memory until merged, so merging it reads no file
# (an idle node's parts up to 81 flushes: a read cost 0.67 ms of CPU in a live recorder), as
# long as all kept parts hold at most MEMO_BYTES (Arrow buffers); a merge takes its inputs from
# memory only when its result is lean (partfile.LEAN_ROWS), where the bytes are the same
MEMO_ROWS = 1024
MEMO_BYTES = 4 << 20


def _step(name: str) -> None:
    """Between two steps of a merge; tests replace it to crash there."""


@dataclass
class Merged:
    """A merge written under its temp name, waiting for `install`."""

    inputs: list[PartInfo]
    tmp: Path
    final: Path
    info: PartInfo
    rows: pa.Table | None = None  # the merged rows, kept when at most MEMO_ROWS


def merged_table(paths: list[Path], time_column: str, memo: dict[str, pa.Table] | None = None) -> pa.Table:
    """The rows of the parts, in (time, seq) order; ties keep part order (the sort is stable).
    `memo`: rows of some parts by file name, already in memory (what was written to them)."""
    # lean parts read back without dictionary types (partfile.py): each is read as the table's part schema
    want = part_schema(table_of(paths[0].parent.name).schema)
    # ParquetFile.read, single-threaded: read_table's dataset layer and Arrow's thread pool cost
    # 2.9 ms of CPU for three tiny parts, this 1.9 ms (and no pool threads woken on an idle node)
    memo = memo or {}
    tables = [_as(memo[p.name], want) if p.name in memo else _read(p, want) for p in paths]
    schema = tables[0].schema
    if any(t.schema != schema for t in tables[1:]):
        raise ValueError(f"parts of {paths[0].parent.name} differ in schema: not merged")
    t = pa.concat_tables(tables)
    keys = [c for c in (time_column, "seq") if c in t.column_names]
    if keys and t.num_rows <= LEAN_ROWS and in_order([t.column(k) for k in keys]):
        # already sorted (an idle node's parts mostly are): one chunk per column, as take() leaves
        # it; a lean result is the same bytes either way (tests/unit/test_compact.py)
        return t.combine_chunks()
    if keys:
        t = t.take(pc.sort_indices(t, sort_keys=[(k, "ascending") for k in keys]))
    return t


def _as(t: pa.Table, want: pa.Schema) -> pa.Table:
    """A kept part's rows in the part schema: the writer keeps them so; a cast costs ~50 us."""
    return t if t.schema.equals(want, check_metadata=True) else t.cast(want)


def in_order(keys: list[pa.ChunkedArray]) -> bool:
    """True if the rows are in ascending order of the key columns (the first, then the next on
    ties; rows equal on every key count as in order: a stable sort leaves them so). NULLs or a
    key numpy cannot order: False (the caller sorts)."""
    if not keys or len(keys[0]) < 2:
        return True
    if any(k.null_count for k in keys):
        return False
    cols = [k.to_numpy() for k in keys]
    if any(c.dtype.kind not in "iuf" for c in cols):
        return False
    ok = cols[-1][1:] >= cols[-1][:-1]
    for c in reversed(cols[:-1]):
        ok = (c[1:] > c[:-1]) | ((c[1:] == c[:-1]) & ok)
    return bool(ok.all())


def _read(path: Path, want: pa.Schema) -> pa.Table:
    with pq.ParquetFile(path) as f:
        t = f.read(use_threads=False)
    if t.schema.names != want.names:
        # a part of an older schema (columns added since): the dataset layer fills them with NULLs
        return pq.read_table(path, schema=want)
    return t.cast(want)


def encode_sorted(t: pa.Table, row_group_rows: int = ROW_GROUP_ROWS, schema: pa.Schema | None = None) -> pa.Buffer:
    """`schema`: the declared table's (its units choose the delta-encoded columns); a small result is lean."""
    sink = pa.BufferOutputStream()
    if t.num_rows > LEAN_ROWS:
        t = tight_dictionaries(t)  # a part read back holds its file's whole dictionary page
    opts = parquet_options(schema or t.schema, t.num_rows <= LEAN_ROWS, t.num_rows)
    pq.write_table(t, sink, row_group_size=row_group_rows, **opts)
    return sink.getvalue()


def merge(tape: Path, inputs: list[PartInfo], time_column: str, now_ns: int,
          memo: dict[str, pa.Table] | None = None) -> Merged:
    """Steps 1: the merged part written and fsynced under a temp name (nothing visible yet)."""
    folder = tape / inputs[0].table
    t = merged_table([folder / p.name for p in inputs], time_column, memo)
    data = encode_sorted(t, schema=table_of(inputs[0].table).schema)
    maxes = [p.max_ns for p in inputs if p.max_ns is not None]
    info = PartInfo(inputs[0].table, inputs[0].index, t.num_rows, data.size, max(maxes) if maxes else None,
                    now_ns, blake2b_hex(data), last=inputs[-1].end)
    tmp = folder / f".{info.name}.tmp"
    _write_file(tmp, data)
    _step("written")
    return Merged(inputs, tmp, folder / info.name, info, t if t.num_rows <= MEMO_ROWS else None)


def place(ledger, m: Merged) -> bool:
    """Step 2 without its fsync: rename into place if every input is still live (else remove the
    temp file: an input was retired meanwhile, and False)."""
    live = ledger.parts.get(m.info.table, [])
    n = len(m.inputs)
    at = next((i for i, p in enumerate(live) if p is m.inputs[0]), -1)
    window = live[at:at + n] if at >= 0 else []
    if len(window) != n or any(a is not b for a, b in zip(window, m.inputs)):
        discard(m)
        return False
    os.replace(m.tmp, m.final)
    return True


def install(ledger, m: Merged) -> bool:
    """Steps 2-3 (the writer's thread): rename into place, fsync the folder, then the ledger
    names it instead of its inputs; the caller's next manifest rewrite makes that durable."""
    if not place(ledger, m):
        return False
    fsync_dir(m.final.parent)
    _step("renamed")
    ledger.replace(m.inputs, m.info)
    return True


def discard(m: Merged) -> None:
    try:
        os.unlink(m.tmp)
    except OSError:
        pass


@dataclass
class CompactStats:
    merges: int = 0
    parts_in: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    dropped: int = 0  # results whose inputs were retired meanwhile
    errors: int = 0
    last_error: str | None = None
    max_merge_ns: int = 0
    busy_ns: int = 0

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class _Job:
    groups: list[tuple[list[PartInfo], str, dict[str, pa.Table]]]
    done: list[Merged] = field(default_factory=list)


class Compactor:
    """Merges a live writer's parts on a background thread, one batch of merges at a time.

    The writer is not thread-safe: `schedule` and `install_done` run on its thread
    (the recorder loop, at each flush); the thread only reads inputs and writes temp files.
    """

    def __init__(self, writer, policy: Policy, *, nice: int = 10):
        self.writer = writer
        self.policy = policy
        self.stats = CompactStats()
        self._nice = nice
        self._jobs: queue.Queue = queue.Queue()
        self._idle = threading.Event()
        self._idle.set()
        self._abort = threading.Event()
        self._job: _Job | None = None
        # (table, part name) -> rows of small live parts (MEMO_ROWS); only the writer's thread
        # touches it: a job carries its own inputs' rows
        self._memo: dict[tuple[str, str], pa.Table] = {}
        self._memo_bytes: dict[tuple[str, str], int] = {}  # their Arrow buffers, bounded by MEMO_BYTES
        if writer.on_rows is None:
            writer.on_rows = self.remember
        self._thread = threading.Thread(target=self._run, name="nodetape-compact", daemon=True)
        self._thread.start()

    # -- the writer's thread -----------------------------------------------------
    def remember(self, table: str, name: str, rows: pa.Table) -> None:
        """A part just written (writer.on_rows): kept in memory if small, until merged or retired."""
        if rows.num_rows <= MEMO_ROWS and self.policy.fan_in <= self.policy.max_units and not self.writer.manifest.disk_full:
            self._keep((table, name), rows)

    def _keep(self, key: tuple[str, str], rows: pa.Table) -> None:
        size = rows.get_total_buffer_size()
        if sum(self._memo_bytes.values()) + size <= MEMO_BYTES:
            self._memo[key], self._memo_bytes[key] = rows, size

    def _forget(self, keys) -> None:
        for k in list(keys):
            self._memo.pop(k, None)
            self._memo_bytes.pop(k, None)

    def _kept(self, name: str, group: list[PartInfo]) -> dict[str, pa.Table]:
        """The group's inputs kept in memory, if its result is lean (where memory or file give the
        same bytes: no dictionary pages); else none (all read)."""
        if sum(p.rows for p in group) > LEAN_ROWS:
            return {}
        return {p.name: self._memo[(name, p.name)] for p in group if (name, p.name) in self._memo}

    def schedule(self) -> int:
        """Plan merges over the ledger's parts and hand them to the thread (if it is idle); how many."""
        w = self.writer
        live = w.ledger.parts
        names = {(name, p.name) for name, parts in live.items() for p in parts}
        self._forget([k for k in self._memo if k not in names])  # merged or retired
        if w.failed or w.degraded or w.manifest.disk_full:
            self._forget(list(self._memo))
            return 0  # on a full disk, space goes to new rows, not to copies
        if not self._idle.is_set() or self._job is not None:
            return 0  # one batch at a time
        groups = []
        for name, parts in live.items():
            groups += [(g, table_of(name).time_column, self._kept(name, g)) for g in plan(parts, self.policy)]
        if groups:
            self._job = _Job(groups)
            self._idle.clear()
            self._jobs.put(self._job)
        return len(groups)

    def install_done(self) -> int:
        """Install the finished batch (before the writer's flush rewrites the manifest); how many."""
        if self._job is None or not self._idle.is_set():
            return 0
        job, self._job = self._job, None
        ledger = self.writer.ledger
        placed = [m for m in job.done if place(ledger, m)]
        self.stats.dropped += len(job.done) - len(placed)
        # each folder fsynced once, with the flush's new parts, before the manifest can name any of
        # them (writer.sync_folders; the flush follows at once: recorder/loop.py)
        for folder in {m.final.parent for m in placed}:
            self.writer.defer_sync(folder)
        for m in placed:
            ledger.replace(m.inputs, m.info)
            if m.rows is not None and units(m.info) * self.policy.fan_in <= self.policy.max_units:
                self._keep((m.info.table, m.info.name), m.rows)  # it can be merged again
            self.stats.merges += 1
            self.stats.parts_in += len(m.inputs)
            self.stats.bytes_in += sum(p.bytes for p in m.inputs)
            self.stats.bytes_out += m.info.bytes
        self.writer.compaction = self.stats.to_json()
        return len(placed)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the batch in flight is merged (tests, benchmarks); True if idle."""
        return self._idle.wait(timeout)

    def stop(self, install: bool = True) -> None:
        """Stop the thread (between two merges); install what is done, or drop it."""
        self._abort.set()
        self._jobs.put(None)
        self._thread.join()
        if install:
            self.install_done()
        elif self._job is not None:
            for m in self._job.done:
                discard(m)
            self._job = None

    # -- the compactor's thread ---------------------------------------------------
    def _run(self) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self._nice)
        except (OSError, AttributeError):
            pass  # best effort: the recorder's sources come first
        while (job := self._jobs.get()) is not None:
            for inputs, time_column, memo in job.groups:
                if self._abort.is_set():
                    break
                self._merge_one(job, inputs, time_column, memo)
            self._idle.set()
        self._idle.set()

    def _merge_one(self, job: _Job, inputs: list[PartInfo], time_column: str, memo: dict[str, pa.Table]) -> None:
        t0 = time.monotonic_ns()
        try:
            job.done.append(merge(self.writer.path, inputs, time_column, self.writer._boot_clock(), memo))
        except Exception as e:  # noqa: BLE001 - a failed merge loses nothing: its inputs stay
            self.stats.errors += 1
            self.stats.last_error = f"{type(e).__name__}: {e}"[:300]
        dt = time.monotonic_ns() - t0
        self.stats.busy_ns += dt
        self.stats.max_merge_ns = max(self.stats.max_merge_ns, dt)
