"""Write a tape: per-table Arrow buffers flushed into Parquet parts, plus the manifest.

Crash safety (DESIGN.md principle 5): a part is encoded in memory, written under
a hidden temporary name, fsynced, renamed to `part-NNNNNN.parquet` and its folder
fsynced; only then does the manifest name it. A SIGKILL leaves at worst a stray
temp file, which readers ignore, and loses at most the rows buffered since the
last flush. A new tape is built under a hidden name beside OUT and renamed into
place once its first manifest is on disk, so OUT never exists without one.

Who is right, the manifest or the folder? Readers trust the parts on disk (a part
renamed just before a SIGKILL is complete and fsynced, though the manifest never
named it) minus the parts the manifest has retired: retention first rewrites the
manifest with a higher `first_part`, and only unlinks the retired files a grace
period later, so a reader that listed them a moment before can still read them.

Flight-recorder mode: `retain_ns` retires whole parts whose newest row is older
than the window; `max_tape_bytes` retires the oldest parts (over all tables) while
the tape is larger than the bound (retention.py keeps that ledger).

Memory: each table flushes early past `max_buffer_bytes` (parts roll by size as
well as time); all tables together flush early past `max_total_bytes`, at most
once per `min_early_flush_ns`; between two early flushes, rows of raw event
tables (RAW_TABLES) that would grow the buffers further are dropped and counted
('backpressure'), so memory stays bounded whatever the event rate.

Disk full (ENOSPC, EDQUOT), escalating: unlink retired parts still in their grace
period; in flight-recorder mode retire the oldest parts at once; then stop
writing raw tables (their rows are dropped and counted 'disk_full') and retry
the sampled ones; then give up: drop the rest, free the reserve file (kept from
the start so the last manifest fits), write the final manifest and raise
DiskFull. Nothing already written is touched, except parts retention owns.

Parquet settings, one by one:
- zstd: about 2x smaller than snappy on these tables for similar write cost;
- dictionary encoding on strings (paths, kinds, comms repeat on most rows);
- DELTA_BINARY_PACKED on time and sequence columns (monotone, so deltas are tiny);
- never BYTE_STREAM_SPLIT on integer columns: DuckDB cannot read it;
- no per-column metadata in the part's stored Arrow schema (the units and docs
  of schemas/tables.py): every part's footer repeated them, 35-40% of a small
  part (a cgroup_samples part of 14 rows: 9.6 KB -> 5.9 KB); `nodetape schema`
  and docs/schema.md carry them, the table-level metadata stays.
"""

from __future__ import annotations

import errno
import functools
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from nodetape.core.clock import boottime_ns
from nodetape.core.errors import NodetapeError
from nodetape.tape.format import MANIFEST
from nodetape.tape.fs import atomic_write_json, fsync_dir
from nodetape.tape.retention import PartInfo, PartLedger, part_name
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

# High-volume event streams: dropped first under back-pressure and on a full disk.
# Sampled tables (cgroup_samples, psi_*, recorder_stats, ...) and lifecycle events
# are small and bounded by the sampling interval, and are what an incident needs most.
RAW_TABLES = frozenset({"file_opens", "processes", "namespaces", "packet_drops", "syscall_counts", "syscall_latency"})

_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFull(NodetapeError):
    """The tape's filesystem is full and the recorder cannot go on (exit 1: not bad input)."""

    exit_code = 1




def _write_file(path: Path, data, mode: int = 0o600) -> None:
    """Write bytes, fsync; remove the file on any error (ENOSPC leaves no half file)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        try:
            os.unlink(path)
        except OSError:
            pass
        raise
    os.close(fd)


@dataclass
class _TableBuffer:
    name: str
    schema: pa.Schema
    time_column: str
    batches: list[pa.RecordBatch] = field(default_factory=list)
    rows: int = 0
    nbytes: int = 0
    next_part: int = 0
    next_seq: int = 0


@functools.lru_cache(maxsize=None)
def _part_schema(schema: pa.Schema) -> pa.Schema:
    """The schema stored in a part: the table's, without per-column metadata (see the module doc)."""
    return pa.schema([f.remove_metadata() for f in schema], metadata=schema.metadata)


def _parquet_options(schema: pa.Schema) -> dict:
    delta_cols = [
        f.name
        for f in schema
        if (f.metadata or {}).get(b"unit") == b"boottime_ns" or f.name == "seq"
    ]
    dict_cols = [f.name for f in schema if pa.types.is_dictionary(f.type) or pa.types.is_string(f.type)]
    return {
        "compression": "zstd",
        "use_dictionary": dict_cols,
        "column_encoding": {c: "DELTA_BINARY_PACKED" for c in delta_cols},
        "write_statistics": True,
    }


class TapeWriter:
    """Buffers batches per table and writes them as Parquet parts.

    Not thread-safe: the recorder loop owns it.
    """

    def __init__(self, path: str | os.PathLike, manifest: dict, *,
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
        self.manifest = manifest
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
        self._buffered = 0
        self._last_flush = self._last_early = clock()
        # table -> reason -> rows dropped by the writer itself
        self.dropped: dict[str, dict[str, int]] = {}
        self.early_flushes = 0
        self.degraded = False  # raw tables are no longer written (disk full)
        self.failed = False    # nothing more can be written
        self.manifest_stale = False
        self.ledger = PartLedger(self.path, manifest, retain_ns=retain_ns, max_bytes=max_tape_bytes,
                                 grace_ns=self.delete_grace_ns, clock=clock, boot_clock=boot_clock)
        self._create()
        self._reserve_space(reserve_bytes)

    # -- creation ---------------------------------------------------------------
    def _create(self) -> None:
        """Create the tape folder with its first manifest, atomically when the parent allows."""
        p = self.path
        if p.exists() and (not p.is_dir() or any(p.iterdir())):
            raise FileExistsError(errno.EEXIST, "output exists and is not an empty folder", str(p))
        tmp: Path | None = p.parent / f".{p.name}.new-{os.getpid()}"
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp.mkdir(mode=0o700)
        except PermissionError:
            # parent not writable (an OUT pre-created in a folder we cannot write): build in place
            tmp = None
        except OSError as e:
            if e.errno in _FULL:
                raise DiskFull(f"disk full creating {p}") from None
            raise
        target = tmp or p
        try:
            target.mkdir(parents=True, exist_ok=True, mode=0o700)
            # tapes hold process names, paths and cmdlines: not for other users
            os.chmod(target, 0o700)
            atomic_write_json(target / MANIFEST, self.manifest)
            if tmp is not None:
                os.rename(tmp, p)  # also replaces an empty OUT the user made
                fsync_dir(p.parent)
        except OSError as e:
            if tmp is not None:
                try:
                    (tmp / MANIFEST).unlink()
                except OSError:
                    pass
                try:
                    tmp.rmdir()
                except OSError:
                    pass
            if e.errno in _FULL:
                raise DiskFull(f"disk full creating {p}") from None
            raise

    def _reserve_space(self, nbytes: int) -> None:
        if nbytes <= 0:
            return
        f = self.path / RESERVE
        try:
            fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.posix_fallocate(fd, 0, nbytes)
            finally:
                os.close(fd)
        except OSError:
            self._release_reserve()  # no room even for that: go on without

    def _release_reserve(self) -> None:
        try:
            os.unlink(self.path / RESERVE)
        except OSError:
            pass

    # -- appending --------------------------------------------------------------
    def _buffer(self, table: str) -> _TableBuffer:
        buf = self._buffers.get(table)
        if buf is None:
            buf = self._buffers[table] = _TableBuffer(table, schema_of(table), table_of(table).time_column)
        return buf

    def _drop(self, table: str, rows: int, reason: str) -> None:
        if rows:
            d = self.dropped.setdefault(table, {})
            d[reason] = d.get(reason, 0) + rows

    @property
    def dropped_rows(self) -> int:
        return sum(n for d in self.dropped.values() for n in d.values())

    def _early_flush_allowed(self) -> bool:
        return self._clock() - self._last_early >= self.min_early_flush_ns

    def append(self, table: str, batch: pa.RecordBatch | pa.Table) -> None:
        if batch.num_rows == 0:
            return
        if self.failed or (self.degraded and table in RAW_TABLES):
            self._drop(table, batch.num_rows, "disk_full")
            return
        if table in RAW_TABLES and self._buffered >= self.max_total_bytes and not self._early_flush_allowed():
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
            buf.nbytes += b.nbytes
            self._buffered += b.nbytes
        if buf.nbytes >= self.max_buffer_bytes:
            self._flush_table_safe(buf)
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
        if scheduled:
            self._last_flush = self._clock()
        # how far a tape that is never closed (SIGKILL) is known to reach
        self.manifest["last_flush_ns"] = self._boot_clock()
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
        table = pa.Table.from_batches(buf.batches, schema=buf.schema).cast(_part_schema(buf.schema))
        folder = self.path / buf.name
        if not folder.exists():
            folder.mkdir(mode=0o700)
            fsync_dir(self.path)
        # encode in memory: the bytes on disk then come from one write loop whose
        # ENOSPC is a plain OSError, and the part's size is known before writing
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, **_parquet_options(buf.schema))
        data = sink.getvalue()
        name = part_name(buf.next_part)
        tmp = folder / f".{name}.tmp"
        _write_file(tmp, data)
        os.replace(tmp, folder / name)
        fsync_dir(folder)
        max_ns = pc.max(table.column(buf.time_column)).as_py() if buf.time_column in table.column_names else None
        self.ledger.add(PartInfo(buf.name, buf.next_part, table.num_rows, data.size, max_ns, self._boot_clock()))
        buf.next_part += 1
        self._clear(buf)

    # -- disk full ----------------------------------------------------------------
    def _make_room(self, buf: _TableBuffer | None) -> str:
        """One step of the disk-full escalation (see the module doc).

        Returns 'retry' when space may have been freed, 'degraded' when raw tables
        were just given up; raises DiskFull at the end.
        """
        if self.ledger.pending:
            # the manifest already dropped them: skip their grace period
            self.ledger.unlink_pending(force=True)
            return "retry"
        if self.ledger.bounded and self.ledger.oldest() is not None:
            # flight-recorder mode: the oldest rows are the ones to lose; free about
            # what the part needs (a part is smaller than its Arrow buffer)
            n = self.ledger.evict((buf.nbytes // 2 if buf is not None else 0) + (64 << 10))
            d = self.manifest.setdefault("disk_full", {"at_ns": self._boot_clock(), "fatal": False})
            d["evicted_parts"] = d.get("evicted_parts", 0) + n
            d["action"] = "retired the oldest parts early to make room"
            # manifest first, then the files; if even the manifest cannot be written
            # the files go anyway (readers skip parts that vanished)
            self._try_write_manifest()
            self.ledger.unlink_pending(force=True)
            return "retry"
        if not self.degraded:
            self.degraded = True
            for b in self._buffers.values():
                if b.name in RAW_TABLES and b.rows:
                    self._drop(b.name, b.rows, "disk_full")
                    self._clear(b)
            d = self.manifest.setdefault("disk_full", {"at_ns": self._boot_clock(), "fatal": False})
            d["action"] = "stopped writing raw event tables (" + ", ".join(sorted(RAW_TABLES)) + ")"
            return "degraded"
        self._fatal("no space left after dropping raw event tables")
        return "fatal"  # not reached

    def _fatal(self, why: str) -> None:
        self.failed = True
        for b in self._buffers.values():
            if b.rows:
                self._drop(b.name, b.rows, "disk_full")
                self._clear(b)
        self._release_reserve()
        d = self.manifest.setdefault("disk_full", {"at_ns": boottime_ns()})
        d.update(fatal=True, reason=why)
        self.manifest["stop_reason"] = f"disk full: {why}"
        self.manifest["writer"] = self.stats_json()
        self._try_write_manifest()
        raise DiskFull(f"disk full writing {self.path}: {why}; the tape is valid up to its last flush")

    # -- manifest ---------------------------------------------------------------
    def stats_json(self) -> dict:
        return {"dropped": self.dropped, "early_flushes": self.early_flushes,
                "max_buffer_bytes": self.max_buffer_bytes, "max_total_bytes": self.max_total_bytes}

    def _try_write_manifest(self) -> bool:
        try:
            atomic_write_json(self.path / MANIFEST, self.manifest)
            self.manifest_stale = False
            return True
        except OSError:
            self.manifest_stale = True  # the previous manifest stays valid
            return False

    def _write_manifest_or_fail(self) -> None:
        for _ in range(8):
            try:
                atomic_write_json(self.path / MANIFEST, self.manifest)
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
        if self.dropped or self.early_flushes:
            self.manifest["writer"] = self.stats_json()
        self._write_manifest_or_fail()

    def snapshot(self, out: str | os.PathLike, reason: str) -> Path:
        """Flush, then save the current window as its own closed tape at `out` (hard links)."""
        from nodetape.tape.snapshot import write_snapshot

        self.flush(scheduled=False)
        return write_snapshot(self.path, self.manifest, self.ledger.live_parts(), Path(out), reason=reason)

    def close(self, end_ns: int) -> None:
        if not self.failed:
            self.flush()
        self.ledger.finish(0 if self.failed else 1_000_000_000)
        self._release_reserve()
        self.manifest["end_ns"] = end_ns
        self.manifest["closed"] = True
        if self.dropped or self.early_flushes:
            self.manifest["writer"] = self.stats_json()
        if self.failed:
            self._try_write_manifest()
        else:
            self._write_manifest_or_fail()
