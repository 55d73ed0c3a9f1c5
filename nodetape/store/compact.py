"""`nodetape compact STORE`: merge each table's parts of a date, across all hosts, into one file.

The layout and how readers use it are in store/compacted.py and docs/fleet.md. Here,
for each table and date, under a lock (one compaction of a table at a time):

1. leftovers of a killed compaction are removed: hidden temporaries, and compacted
   files the index does not name (never read: the index is the commit point);
2. the per-host parts the index does not cover yet (of tapes whose manifest is
   pushed) are read host by host in name order, each host's rows sorted by time,
   and streamed into one new file `<cid>.parquet` with `_nodetape_host` and
   `_nodetape_src` columns, in row groups of ROW_GROUP rows (their min/max of host
   let one-host queries skip the others); the file is fsynced and renamed into place;
3. the index, extended by that file and the parts it covers (each with its BLAKE2b,
   rows and time range), is written to a temporary name, fsynced and renamed: the commit;
4. the covered per-host parts are removed (a push of one of them again is a no-op:
   push checks the index, store/push.py).

A SIGKILL at any point leaves a store that gives the same rows: before 3 the new file
is unnamed and the parts are all there; after 3 the parts are covered and skipped.
Object stores are refused: their objects cannot be renamed, and a reader listing
parts while they are deleted could miss rows; compact the directory store instead.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from nodetape.core.errors import TapeError, UserError
from nodetape.schemas import TABLES
from nodetape.store import compacted as cz
from nodetape.store import layout
from nodetape.store.storefs import PARTIAL, blake2b_local, is_url, open_fs
from nodetape.tape.fs import fsync_dir

ROW_GROUP = 16384
KILL_AT = "NODETAPE_COMPACT_KILL_AT"  # tests: SIGKILL this process at the named step (tests/fleet)


def _step(name: str) -> None:
    """A named step of a compaction; the crash tests kill the process here, for real (SIGKILL)."""
    if os.environ.get(KILL_AT) == name:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class CompactStats:
    tables: int = 0
    dates: int = 0
    files: int = 0
    parts: int = 0
    rows: int = 0
    bytes: int = 0
    removed: int = 0  # per-host parts removed once covered
    cleaned: int = 0  # leftovers of killed compactions
    seconds: float = 0.0
    skipped_orphans: int = 0  # parts whose tape has no manifest yet: left for the next run
    details: list[str] = field(default_factory=list)


def _out_schema(t) -> pa.Schema:
    from nodetape.tape.partfile import part_schema

    return part_schema(t.schema).append(pa.field(cz.HOST_COL, pa.string())).append(pa.field(cz.SRC_COL, pa.int64()))


def _options(t) -> dict:
    from nodetape.tape.partfile import parquet_options

    opts = parquet_options(t.schema)
    opts["use_dictionary"] = [*opts["use_dictionary"], cz.HOST_COL]
    return opts


def conform(data: pa.Table, t) -> pa.Table:
    """A part's rows in the table's declared columns (NULL where the part has none, as the views show it)."""
    cols = []
    for f in t.schema:
        if f.name in data.column_names:
            c = data.column(f.name)
            cols.append(c if c.type == f.type else c.cast(f.type))
        else:
            cols.append(pa.nulls(data.num_rows, f.type))
    return pa.Table.from_arrays(cols, schema=pa.schema([f.remove_metadata() for f in t.schema]))


def _time_range(data: pa.Table, column: str) -> tuple[int | None, int | None]:
    import pyarrow.compute as pc

    mm = pc.min_max(data.column(column))
    return mm["min"].as_py(), mm["max"].as_py()


class _Sink:
    """The new compacted file: rows buffered into whole row groups, written to a hidden temporary."""

    def __init__(self, path: str, t):
        self.path, self.t = path, t
        self.writer = pq.ParquetWriter(path, _out_schema(t), **_options(t))
        self.buf: list[pa.Table] = []
        self.n = 0
        self.rows = 0

    def add(self, data: pa.Table) -> None:
        from nodetape.tape.partfile import tight_dictionaries

        self.buf.append(tight_dictionaries(data))  # a part read back holds its file's whole dictionary page
        self.n += data.num_rows
        if self.n >= ROW_GROUP:
            whole = pa.concat_tables(self.buf)
            k = (self.n // ROW_GROUP) * ROW_GROUP
            self.writer.write_table(whole.slice(0, k), row_group_size=ROW_GROUP)
            self.buf, self.n = [whole.slice(k)], self.n - k
        self.rows += data.num_rows

    def close(self) -> None:
        if self.n:
            self.writer.write_table(pa.concat_tables(self.buf), row_group_size=ROW_GROUP)
        self.writer.close()
        with open(self.path, "rb+") as f:
            os.fsync(f.fileno())


def _read_host(store, t, host: str, parts: list[tuple[str, int, str]], cid_file: str):
    """(the host's rows sorted by time with their source columns, index records of its parts)."""
    tables, records = [], {}
    for tid, index, rel in sorted(parts):
        path = store.local_path(rel)
        try:
            data = conform(pq.read_table(path), t)
        except FileNotFoundError:
            continue  # removed meanwhile (another compaction's leftover pass)
        except Exception as e:
            raise TapeError(f"{path}: corrupt Parquet part ({str(e).splitlines()[0] if str(e) else type(e).__name__})",
                            path) from None
        sid = cz.src_id(rel)
        lo, hi = _time_range(data, t.time_column) if data.num_rows else (None, None)
        digest, size = blake2b_local(path)
        records[rel] = {"src": sid, "host": host, "tape": tid, "index": index, "file": cid_file,
                        "rows": data.num_rows, "bytes": size, "blake2b": digest, "min_ns": lo, "max_ns": hi}
        n = data.num_rows
        tables.append(data.append_column(cz.HOST_COL, pa.repeat(pa.scalar(host, pa.string()), n))
                      .append_column(cz.SRC_COL, pa.repeat(pa.scalar(sid, pa.int64()), n)))
    if not tables:
        return None, records
    return pa.concat_tables(tables).sort_by([(t.time_column, "ascending")]), records


def write_compacted(store, t, date: str, todo: dict[str, list[tuple[str, int, str]]]) -> tuple[dict, dict]:
    """Stream the parts of `todo` (host -> [(tape, index, rel)]) into one new compacted file, fsynced and
    renamed into place (not yet named by the index); (its index entry, the covered parts' records)."""
    folder = store.full(cz.date_dir(t.name, date))
    os.makedirs(folder, exist_ok=True)
    cid_file = f"c{time.time_ns():x}-{uuid.uuid4().hex[:8]}.parquet"
    tmp = f"{folder}/.{cid_file}.{os.getpid()}-{uuid.uuid4().hex[:6]}{PARTIAL}"
    sink = _Sink(tmp, t)
    records: dict[str, dict] = {}
    try:
        for host in sorted(todo):
            data, recs = _read_host(store, t, host, todo[host], cid_file)
            records.update(recs)
            if data is not None:
                sink.add(data)
                _step("writing")
        sink.close()
        _step("written")
        os.replace(tmp, f"{folder}/{cid_file}")
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(folder)
    hosts = sorted(todo)
    entry = {"file": cid_file, "rows": sink.rows, "bytes": os.path.getsize(f"{folder}/{cid_file}"),
             "parts": len(records), "hosts": [hosts[0], hosts[-1]], "written_ns": time.time_ns()}
    return entry, records


def clean_leftovers(store, table: str, date: str, index: dict) -> int:
    """Remove what killed compactions of this date left: temporaries, and files the index does not name."""
    named = {f.get("file") for f in index["files"]}
    folder = cz.date_dir(table, date)
    removed = 0
    for name, is_dir in store.list(folder):
        stale = name.endswith(PARTIAL) or (name.endswith(".parquet") and not name.startswith(".") and name not in named)
        stale = stale or (name.startswith(f".{cz.INDEX}.") and name.endswith(PARTIAL))
        if stale and not is_dir:
            try:
                os.unlink(store.full(f"{folder}/{name}"))
                removed += 1
            except OSError:
                pass
    return removed


def _remove_covered(store, present: list[str], covered: dict) -> int:
    """Remove the covered per-host parts, then their date and host folders if that left them empty (a
    reader then lists a few folders, not one per host and table; a push recreates them, storefs.py)."""
    n = 0
    folders = set()
    for rel in present:
        if rel in covered:
            try:
                os.unlink(store.full(rel))
                n += 1
                _step("removing")
            except FileNotFoundError:
                pass
            folders.add(rel.rsplit("/", 1)[0])
    for folder in sorted(folders | {f.rsplit("/", 1)[0] for f in folders}, key=len, reverse=True):
        try:
            os.rmdir(store.full(folder))
        except OSError:
            pass  # not empty: a push wrote there meanwhile
    return n


def compact_date(store, t, date: str, found: list[tuple[str, str, int, str]], have_manifest: set,
                 stats: CompactStats) -> None:
    """One table's date: leftovers cleaned, uncovered parts merged and committed, covered parts removed."""
    index = cz.read_index(store, t.name, date)
    stats.cleaned += clean_leftovers(store, t.name, date, index)
    todo: dict[str, list[tuple[str, int, str]]] = {}
    for host, tid, idx, rel in found:
        if rel in index["parts"]:
            continue
        if (host, tid) not in have_manifest:
            stats.skipped_orphans += 1
            continue
        todo.setdefault(host, []).append((tid, idx, rel))
    if todo:
        entry, records = write_compacted(store, t, date, todo)
        index["files"].append(entry)
        index["parts"].update(records)
        _step("renamed")
        store.put_bytes((json.dumps(index, separators=(",", ":")) + "\n").encode(), cz.index_path(t.name, date))
        fsync_dir(store.full(cz.date_dir(t.name, date)))  # the commit is durable before any part goes
        stats.files += 1
        stats.parts += len(records)
        stats.rows += entry["rows"]
        stats.bytes += entry["bytes"]
        stats.details.append(f"{t.name} {date}: {len(records)} parts -> {entry['file']} ({entry['rows']} rows)")
        _step("committed")
    stats.removed += _remove_covered(store, [f[3] for f in found], index["parts"])
    stats.dates += 1


def _found_by_date(reader, table: str) -> dict[str, list[tuple[str, str, int, str]]]:
    """date -> [(host, tape id, index, rel)] of the table's per-host parts."""
    out: dict[str, list] = {}
    for (host, tid), parts in reader.parts(table).items():
        for idx, rel in parts:
            date = layout.partition_value(rel.split("/")[2], "date")
            out.setdefault(date, []).append((host, tid, idx, rel))
    return out


def _tapes_with_manifest(store) -> set[tuple[str, str]]:
    out = set()
    for hname, is_dir in store.list(layout.TAPES_DIR):
        host = layout.partition_value(hname, "host")
        if is_dir and host is not None:
            out.update((host, n[:-5]) for n, d in store.list(f"{layout.TAPES_DIR}/{hname}")
                       if not d and n.endswith(".json"))
    return out


def _lock(store, table: str):
    folder = store.full(f"{table}/{cz.COMPACTED_DIR}")
    os.makedirs(folder, exist_ok=True)
    fd = os.open(f"{folder}/.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UserError(f"{folder}: another `nodetape compact` holds this table; run again once it ends") from None
    return fd


def compact(location: str, table: str | None = None, progress=None) -> CompactStats:
    """Compact every table (or one) of a directory store; UserError for an object store or a bad table.

    progress(table, date, stats), if given, is called after each table's date is done.
    """
    from nodetape.store.reader import StoreReader

    if is_url(location):
        raise UserError(f"{location}: compact works on a directory store only (object stores cannot rename "
                        "atomically); run it where the store is a folder (docs/fleet.md)")
    tables = [t for t in TABLES if table is None or t.name == table]
    if not tables:
        raise UserError(f"--table {table!r}: no such table (tables: {', '.join(t.name for t in TABLES)})")
    store = open_fs(location)
    if not store.exists_dir(layout.TAPES_DIR):
        raise UserError(f"{location}: not a fleet store (no {layout.TAPES_DIR} folder)")
    stats = CompactStats()
    start = time.monotonic()
    reader = StoreReader(store, None, None, None)
    for t in tables:
        fd = _lock(store, t.name)
        try:
            found = _found_by_date(reader, t.name)  # listed before the manifests: a tape pushed meanwhile waits
            have = _tapes_with_manifest(store)
            for date in sorted(set(found) | set(cz.compacted_dates(store, t.name))):
                compact_date(store, t, date, found.get(date, []), have, stats)
                if progress:
                    progress(t.name, date, stats)
        finally:
            os.close(fd)
        stats.tables += 1
    stats.seconds = time.monotonic() - start
    return stats


def summary_line(st: CompactStats, where: str) -> str:
    line = (f"compacted {st.parts} parts ({st.rows} rows) of {st.tables} table(s) into {st.files} file(s), "
            f"{st.bytes / 1e6:.2f} MB, in {where} in {st.seconds:.2f} s; {st.removed} covered parts removed")
    if st.skipped_orphans:
        line += f"; {st.skipped_orphans} parts left for the next run (their tape's manifest is not pushed yet)"
    if st.cleaned:
        line += f"; {st.cleaned} leftovers of an interrupted compaction removed"
    return line


def run(location: str, table: str | None = None, quiet: bool = False, stream=sys.stderr) -> CompactStats:
    """compact() with, on a terminal, one live line per table and date, then the summary line."""
    live = stream is not None and not quiet and stream.isatty()

    def progress(name: str, date: str, st: CompactStats) -> None:
        stream.write(f"\r\x1b[Kcompact {name} date={date}: {st.parts:,} parts into {st.files} file(s) so far")
        stream.flush()

    st = compact(location, table, progress=progress if live else None)
    if live:
        stream.write("\r\x1b[K")
    if not quiet and stream is not None:
        stream.write(summary_line(st, location) + "\n")
    return st
