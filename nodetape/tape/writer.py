"""Write a tape: per-table Arrow buffers flushed into Parquet parts, plus the manifest.

Crash safety (DESIGN.md principle 5): a part is encoded in memory, written under
a hidden temporary name, fsynced, renamed to `part-NNNNNN.parquet`, and its folder
fsynced once the flush renamed every table's part (sealing.py: one fsync per
folder per flush); only then does the manifest name it. A SIGKILL leaves at worst a stray
temp file, which readers ignore, and loses at most the rows buffered since the
last flush. A new tape is built under a hidden name beside OUT and renamed into
place once its first manifest is on disk, so OUT never exists without one.

Readers trust the parts on disk over the manifest's list (docs/reliability.md): a
part renamed just before a SIGKILL is complete; retired parts are unlinked only a
grace period after the manifest dropped them.

Flight-recorder mode: `retain_ns` and `max_tape_bytes` retire whole parts, oldest
first (retention.py keeps that ledger).

Memory: each table flushes early past `max_buffer_bytes` (parts roll by size as
well as time); all tables together flush early past `max_total_bytes`, at most
once per `min_early_flush_ns`; between two early flushes, rows of raw event
tables (RAW_TABLES) that would grow the buffers further are dropped and counted
('backpressure'), so memory stays bounded whatever the event rate.

Disk full (ENOSPC, EDQUOT), escalating (diskfull.py): unlink retired parts still in their grace
period; in flight-recorder mode retire the oldest parts at once; then stop
writing raw tables (their rows are dropped and counted 'disk_full') and retry
the sampled ones; then give up: drop the rest, free the reserve file (kept from
the start so the last manifest fits), write the final manifest and raise
DiskFull. Nothing already written is touched, except parts retention owns.

Offline copies (`offline=True`: slices, test and bench tapes) never drop a row and
fail at once on a full disk. Each part's size, rows and BLAKE2b go into the manifest.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from nodetape.core.clock import boottime_ns
from nodetape.tape.diskfull import _FULL, RAW_TABLES, DiskFull, DiskFullEscalation
from nodetape.tape.format import FORMAT_VERSION, MANIFEST, Manifest
from nodetape.tape.fs import atomic_write_text, create_tape_folder, reserve_space
from nodetape.tape.manifest_text import ManifestText
from nodetape.tape.partfile import blake2b_hex, column_max, encode, part_schema, write_file as _write_file
from nodetape.tape.sealing import Sealer
from nodetape.tape.retention import PartInfo, PartLedger, part_name
from nodetape.tape.snapshot import write_snapshot
from nodetape.schemas import schema as schema_of
from nodetape.schemas import table as table_of

DEFAULT_FLUSH_NS = 2_000_000_000
# A table flushes early when its buffer passes this many bytes, which bounds the
# recorder's memory whatever the event rate (and rolls parts by size).
DEFAULT_MAX_BUFFER_BYTES = 16 << 20
# All tables together: past this, flush everything early; raw tables drop rows
# when even early flushes cannot keep up.
DEFAULT_MAX_TOTAL_BYTES = 64 << 20
# Space held from the start and freed on a fatal disk full, so the final manifest fits.
RESERVE_BYTES = 256 << 10
RESERVE = ".reserve"

@dataclass
class _TableBuffer:
    name: str
    schema: pa.Schema
    time_column: str
    part_schema: pa.Schema  # the schema a part stores (partfile.py): its table is built in it, no cast
    time_index: int  # the time column's position (-1: none); `column_names` built a list per part
    batches: list[pa.RecordBatch] = field(default_factory=list)
    rows: int = 0
    nbytes: int = 0
    next_part: int = 0
    next_seq: int = 0


class TapeWriter(DiskFullEscalation):
    """Buffers batches per table and writes them as Parquet parts. Not thread-safe: the recorder loop owns it."""

    on_sealed = None  # callable(table, path) run once a part is renamed into place (store/pusher.py)
    on_rows = None  # callable(table, part name, pa.Table): its rows, once in place (compact.py keeps small ones)

    def __init__(self, path: str | os.PathLike, manifest: Manifest | dict, *,
                 offline: bool = False,
                 flush_interval_ns: int = DEFAULT_FLUSH_NS,
                 max_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES,
                 max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
                 retain_ns: int | None = None,
                 max_tape_bytes: int | None = None,
                 delete_grace_ns: int | None = None,
                 reserve_bytes: int = RESERVE_BYTES,
                 clock=time.monotonic_ns,
                 boot_clock=boottime_ns):
        self.path = Path(path)
        if not isinstance(manifest, Manifest):
            # a slice's manifest built as JSON: checked like one read from disk
            manifest = Manifest.from_dict(manifest, str(self.path / MANIFEST))
        manifest.format_version = FORMAT_VERSION  # what this writer writes (checksums)
        self.manifest = manifest
        # an offline copy never drops rows (module doc)
        self.offline = offline
        self.flush_interval_ns = flush_interval_ns
        self.max_buffer_bytes = max_buffer_bytes
        self.max_total_bytes = max_total_bytes
        # long enough for a reader that listed a part to finish its query
        self.delete_grace_ns = (delete_grace_ns if delete_grace_ns is not None
                                else min(max(2 * flush_interval_ns, 2_000_000_000), 30_000_000_000))
        self.min_early_flush_ns = max(50_000_000, flush_interval_ns // 8)
        self._clock = clock
        # the clock of the rows (retention compares it with their ts_ns)
        self._boot_clock = boot_clock
        self._buffers: dict[str, _TableBuffer] = {}
        self._sealer = Sealer(self.path)  # one folder fsync per folder per flush (sealing.py)
        self._text = ManifestText()  # the manifest's JSON, re-encoding only what changed
        self._buffered = 0
        self._last_flush = self._last_early = clock()
        # table -> reason -> rows dropped by the writer itself
        self.dropped: dict[str, dict[str, int]] = {}
        self.early_flushes = 0
        self.degraded = False  # raw tables are no longer written (disk full)
        self.failed = False    # nothing more can be written
        self.manifest_stale = False
        self.compaction: dict | None = None  # a compactor's stats (compact.py), kept in the manifest
        self.ledger = PartLedger(self.path, manifest, retain_ns=retain_ns, max_bytes=max_tape_bytes,
                                 grace_ns=self.delete_grace_ns, clock=clock, boot_clock=boot_clock)
        self._create()
        self._reserve_space(0 if offline else reserve_bytes)

    # -- creation ---------------------------------------------------------------
    def _create(self) -> None:
        try:
            create_tape_folder(self.path, self.manifest.to_dict())
        except OSError as e:
            if e.errno in _FULL:
                raise DiskFull(f"disk full creating {self.path}") from None
            raise

    def _reserve_space(self, nbytes: int) -> None:
        reserve_space(self.path / RESERVE, nbytes)

    def _release_reserve(self) -> None:
        try:
            os.unlink(self.path / RESERVE)
        except OSError:
            pass

    # -- appending --------------------------------------------------------------
    def _buffer(self, table: str) -> _TableBuffer:
        buf = self._buffers.get(table)
        if buf is None:
            s = schema_of(table)
            tc, ps = table_of(table).time_column, part_schema(s)
            buf = self._buffers[table] = _TableBuffer(table, s, tc, ps, ps.get_field_index(tc))
        return buf

    def _drop(self, table: str, rows: int, reason: str) -> None:
        if rows:
            d = self.dropped.setdefault(table, {})
            d[reason] = d.get(reason, 0) + rows

    @property
    def dropped_rows(self) -> int:
        return sum(n for d in self.dropped.values() for n in d.values())

    def _early_flush_allowed(self) -> bool:
        return self.offline or self._clock() - self._last_early >= self.min_early_flush_ns

    def append(self, table: str, batch: pa.RecordBatch | pa.Table) -> None:
        if batch.num_rows == 0:
            return
        if self.failed or (self.degraded and table in RAW_TABLES):
            self._drop(table, batch.num_rows, "disk_full")
            return
        if (not self.offline and table in RAW_TABLES and self._buffered >= self.max_total_bytes
                and not self._early_flush_allowed()):
            # flushing cannot keep up with this stream: lose its newest rows, counted
            self._drop(table, batch.num_rows, "backpressure")
            return
        buf = self._buffer(table)
        batches = batch.to_batches() if isinstance(batch, pa.Table) else [batch]
        for b in batches:
            if b.schema != buf.schema:
                b = b.cast(buf.schema)
            if "seq" in b.schema.names:
                # seq is per table, in the order rows reached the writer: it breaks
                # ties on ts_ns between sources as well as within one
                i = b.schema.get_field_index("seq")
                arrays = list(b.columns)
                arrays[i] = pa.array(range(buf.next_seq, buf.next_seq + b.num_rows), type=pa.int64())
                b = pa.RecordBatch.from_arrays(arrays, schema=buf.schema)
                buf.next_seq += b.num_rows
            buf.batches.append(b)
            buf.rows += b.num_rows
            size = b.nbytes  # 20-130 us a small batch in pyarrow 26 (it walks the buffers' used ranges): once
            buf.nbytes += size
            self._buffered += size
        if buf.nbytes >= self.max_buffer_bytes:
            self._flush_table_safe(buf)
            self.sync_folders()
            self.write_manifest()
        elif self._buffered >= self.max_total_bytes and self._early_flush_allowed():
            self.early_flushes += 1
            self._last_early = self._clock()
            self.flush(scheduled=False)

    @property
    def buffered_bytes(self) -> int:
        return self._buffered

    # -- flushing ---------------------------------------------------------------
    def due(self) -> bool:
        return self._clock() - self._last_flush >= self.flush_interval_ns

    def due_in_ns(self) -> int:
        """How long until the next scheduled flush (<= 0: due now); the recorder sleeps until then."""
        return self.flush_interval_ns - (self._clock() - self._last_flush)

    def flush(self, scheduled: bool = True) -> None:
        # sampled tables first: when the disk fills, the raw streams are what fails
        for buf in sorted(self._buffers.values(), key=lambda b: b.name in RAW_TABLES):
            if buf.rows:
                self._flush_table_safe(buf)
        self.sync_folders()
        if scheduled:
            self._last_flush = self._clock()
        if not self.offline:
            # how far a tape that is never closed (SIGKILL) is known to reach
            self.manifest.last_flush_ns = self._boot_clock()
        self.ledger.enforce()  # the manifest names the retired parts no more, then files go
        self.write_manifest()
        self.ledger.unlink_pending()

    def _clear(self, buf: _TableBuffer) -> None:
        self._buffered -= buf.nbytes
        buf.batches, buf.rows, buf.nbytes = [], 0, 0

    def _flush_table_safe(self, buf: _TableBuffer) -> None:
        for _ in range(8):
            if not buf.rows:
                return
            try:
                self._flush_table(buf)
                return
            except OSError as e:
                if e.errno not in _FULL:
                    raise
                self._make_room(buf)  # a raw buffer is emptied when raw tables are given up
        self._fatal(f"still full after freeing space (table {buf.name})")

    def _flush_table(self, buf: _TableBuffer) -> None:
        # the batches' schema differs from the part's in field metadata only: no cast
        table = pa.Table.from_batches(buf.batches, schema=buf.part_schema)
        data = encode(table, buf.schema)
        self._sealer.seal(buf.name, part_name(buf.next_part), data, table, _write_file)
        max_ns = column_max(table.column(buf.time_index)) if buf.time_index >= 0 else None
        self.ledger.add(PartInfo(buf.name, buf.next_part, table.num_rows, data.size, max_ns, self._boot_clock(),
                                 blake2b_hex(data)))
        buf.next_part += 1
        self._clear(buf)

    def defer_sync(self, folder: Path) -> None:
        """A rename in `folder` (a merged part, compact.py) that the next sync_folders makes durable."""
        self._sealer.renamed_in(folder)

    def sync_folders(self) -> None:
        """The renames since the last call made durable (sealing.py), then the parts sealed since
        announced (on_sealed, on_rows). Before any manifest rewrite: it never names a part whose
        rename a crash could undo."""
        for table, path, rows in self._sealer.sync():
            if self.on_sealed is not None:
                self.on_sealed(table, path)
            if self.on_rows is not None:
                self.on_rows(table, path.name, rows)

    # -- manifest ---------------------------------------------------------------
    def stats_json(self) -> dict:
        return {"dropped": self.dropped, "early_flushes": self.early_flushes,
                "max_buffer_bytes": self.max_buffer_bytes, "max_total_bytes": self.max_total_bytes,
                **({"compaction": self.compaction} if self.compaction else {})}

    def _try_write_manifest(self) -> bool:
        try:
            self.sync_folders()
            atomic_write_text(self.path / MANIFEST, self._text.text(self.manifest))
            self.manifest_stale = False
            return True
        except OSError:
            self.manifest_stale = True  # the previous manifest stays valid
            return False

    def _write_manifest_or_fail(self) -> None:
        for _ in range(8):
            try:
                self.sync_folders()
                atomic_write_text(self.path / MANIFEST, self._text.text(self.manifest))
                self.manifest_stale = False
                return
            except OSError as e:
                if e.errno not in _FULL:
                    raise
                if self._make_room(None) == "degraded":
                    # the previous manifest stays valid (readers trust the parts on
                    # disk); go on without raw tables and try again at the next flush
                    self.manifest_stale = True
                    return
        self.manifest_stale = True
        self._fatal("cannot rewrite the manifest")

    def write_manifest(self) -> None:
        if self.failed:
            self._try_write_manifest()
            return
        if self.dropped or self.early_flushes or self.compaction:
            self.manifest.writer = self.stats_json()
        self._write_manifest_or_fail()

    def snapshot(self, out: str | os.PathLike, reason: str) -> Path:
        """Flush, then save the current window as its own closed tape at `out` (hard links)."""
        self.flush(scheduled=False)
        return write_snapshot(self.path, self.manifest, self.ledger.live_parts(), Path(out), reason=reason)

    # -- what the recorder tells the manifest (only the writer changes it) ----------
    def set_sources(self, sources: dict[str, dict], drops: dict[str, dict[str, int]],
                    snapshots: list[dict] | None) -> None:
        """Sources' status, drops per table (writer's and sources'), snapshots taken."""
        m = self.manifest
        m.set_sources(sources)
        for name in set(m.tables) | set(drops):
            m.set_drops(name, drops.get(name, {}))
        if snapshots:
            m.snapshots = [dict(s) for s in snapshots[-50:]]

    def add_clock_pair(self, pair: tuple[int, int], *, keep_from_ns: int | None = None) -> bool:
        return self.manifest.add_clock_pair(pair, keep_from_ns=keep_from_ns)

    def close(self, end_ns: int) -> None:
        try:  # the kept folder descriptors are closed whatever fails (a last flush's EIO, disk full)
            if not self.failed:
                self.flush()
            self.ledger.finish(0 if self.failed else 1_000_000_000)
            self._release_reserve()
            self.manifest.close(end_ns)
            if self.dropped or self.early_flushes or self.compaction:
                self.manifest.writer = self.stats_json()
            if self.failed:
                self._try_write_manifest()
            else:
                self._write_manifest_or_fail()
        finally:
            self._sealer.close()  # its kept folder descriptors
