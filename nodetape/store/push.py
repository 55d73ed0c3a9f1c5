"""Push sealed tape parts and their manifest into a fleet store.

Each part is copied whole (never one object per event) to
`<table>/host=<host>/date=<date>/<tape-id>-<index>.parquet`, atomically (storefs.py);
the tape's manifest follows to `_tapes/host=<host>/<tape-id>.json`, with a `store`
section recording every pushed part's checksum, size, rows and time range.

Idempotent and resumable: a part already in the store with the same BLAKE2b checksum
is skipped; a part of the same name with other bytes is a conflict, reported and never
overwritten (parts are immutable once sealed, so it means two tapes claim one id).
A push killed midway leaves only whole files (and hidden temporaries the next push of
the same part removes); running it again copies what is missing. Checksums come from
the tape's manifest when it has them (tables.<t>.checksums), else are computed by
streaming the file.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from nodetape.core.errors import TapeError, UserError
from nodetape.schemas import TABLES
from nodetape.store import layout
from nodetape.store.storefs import StoreFS, blake2b_local, open_fs


@dataclass
class PushStats:
    parts_pushed: int = 0
    parts_skipped: int = 0  # already in the store with the same checksum
    bytes_pushed: int = 0
    tapes: int = 0
    conflicts: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, other: "PushStats") -> None:
        self.parts_pushed += other.parts_pushed
        self.parts_skipped += other.parts_skipped
        self.bytes_pushed += other.bytes_pushed
        self.tapes += other.tapes
        self.conflicts += other.conflicts


def part_time_range(path: Path, time_column: str) -> tuple[int | None, int | None, int]:
    """(min, max) of the time column from the footer's statistics, and the row count."""
    import pyarrow.parquet as pq

    meta = pq.read_metadata(path)
    idx = meta.schema.to_arrow_schema().get_field_index(time_column)
    lo = hi = None
    for rg in range(meta.num_row_groups):
        st = meta.row_group(rg).column(idx).statistics if idx >= 0 else None
        if st is None or not st.has_min_max:
            if meta.row_group(rg).num_rows:
                return _scan_range(path, time_column, meta.num_rows)
            continue
        lo = st.min if lo is None else min(lo, st.min)
        hi = st.max if hi is None else max(hi, st.max)
    return lo, hi, meta.num_rows


def _scan_range(path: Path, column: str, rows: int) -> tuple[int | None, int | None, int]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    col = pq.read_table(path, columns=[column]).column(0)
    mm = pc.min_max(col)
    return mm["min"].as_py(), mm["max"].as_py(), rows


class TapeTarget:
    """One tape's place in a store: its host, id, clock pairs and the parts already recorded there."""

    def __init__(self, store: StoreFS, manifest: dict, host: str | None = None):
        self.store = store
        self.manifest = manifest
        self.tape_id = layout.tape_id_of(manifest)
        self.original_host = (manifest.get("host") or {}).get("hostname")
        self.host = layout.check_name("--host", host) if host else layout.host_of(manifest)
        self.pairs = layout.clock_pairs_of(manifest)
        self.manifest_rel = layout.manifest_path(self.host, self.tape_id)
        self.recorded: dict[str, dict[str, dict]] = self._load_recorded()
        self._indexes: dict[tuple[str, str], tuple] = {}  # (table, date) -> (index size, compacted parts)

    def _load_recorded(self) -> dict[str, dict[str, dict]]:
        if self.store.size(self.manifest_rel) is None:
            return {}
        try:
            old = json.loads(self.store.read_bytes(self.manifest_rel))
            parts = old["store"]["parts"]
            return {t: dict(v) for t, v in parts.items() if isinstance(v, dict)}
        except (ValueError, KeyError, TypeError, OSError):
            return {}  # a damaged store manifest is rewritten; files are checked by their bytes

    def manifest_checksum(self, table: str, name: str) -> str | None:
        sums = ((self.manifest.get("tables") or {}).get(table) or {}).get("checksums") or {}
        s = sums.get(name)
        return s.get("blake2b") if isinstance(s, dict) and isinstance(s.get("blake2b"), str) else None

    def push_part(self, table: str, path: Path, index: int, stats: PushStats) -> None:
        t = next(t for t in TABLES if t.name == table)
        try:
            lo, hi, rows = part_time_range(path, t.time_column)
        except FileNotFoundError:
            return  # retired by a live recorder meanwhile
        except Exception as e:
            raise TapeError(f"{path}: corrupt Parquet part ({str(e).splitlines()[0] if str(e) else type(e).__name__})",
                            str(path)) from None
        first = lo if lo is not None else int(self.manifest.get("start_ns") or 0)
        date = layout.wall_date(first, self.pairs)
        rel = layout.part_path(table, self.host, date, self.tape_id, index)
        digest = self.manifest_checksum(table, path.name)
        if digest is None:
            digest, _ = blake2b_local(path)
        size = path.stat().st_size
        record = {"file": rel, "blake2b": digest, "bytes": size, "rows": rows, "min_ns": lo, "max_ns": hi}
        if self._already_there(rel, digest, size, stats):
            self.recorded.setdefault(table, {})[path.name] = record
            return
        stats.bytes_pushed += self.store.put_file(path, rel)
        stats.parts_pushed += 1
        self.recorded.setdefault(table, {})[path.name] = record

    def _compacted_record(self, rel: str) -> dict | None:
        """The compaction index's record of a part (store/compacted.py), None if not compacted."""
        from nodetape.store import compacted as cz

        if not self.store.local:
            return None  # object stores are never compacted
        table, _, date_part = rel.split("/")[:3]
        date = layout.partition_value(date_part, "date")
        size = self.store.size(cz.index_path(table, date))  # an index only grows: its size says it changed
        cached = self._indexes.get((table, date))
        if cached is None or cached[0] != size:
            cached = (size, cz.read_index(self.store, table, date)["parts"] if size is not None else {})
            self._indexes[(table, date)] = cached
        return cached[1].get(rel)

    def _already_there(self, rel: str, digest: str, size: int, stats: PushStats) -> bool:
        have = self.store.size(rel)
        if have is None:
            # checked after the file: a compaction removes a part only once its index covers it
            rec = self._compacted_record(rel)
            if rec is None:
                return False
            if rec.get("blake2b") != digest:
                stats.conflicts.append(f"{self.store.full(rel)}: compacted with other bytes than "
                                       f"{rel.rsplit('/', 1)[1]} of this tape; not pushed again")
            else:
                stats.parts_skipped += 1
            return True
        name = rel.rsplit("/", 1)[1]
        known = next((r for parts in self.recorded.values() for r in parts.values() if r.get("file") == rel), None)
        if have == size and known is not None and known.get("blake2b") == digest:
            stats.parts_skipped += 1
            return True
        theirs, _ = self.store.checksum(rel) if have == size else (None, have)
        if theirs == digest:
            stats.parts_skipped += 1
            return True
        stats.conflicts.append(f"{self.store.full(rel)}: holds other bytes than {name} of this tape; not overwritten")
        return True

    def write_manifest(self, extra: dict | None = None) -> None:
        m = json.loads(json.dumps(self.manifest))  # a deep copy of plain JSON
        m.setdefault("host", {})["hostname"] = self.host
        m["store"] = {"tape_id": self.tape_id, "host": self.host, "original_hostname": self.original_host,
                      "pushed_ns": time.time_ns(), "parts": self.recorded, **(extra or {})}
        self.store.put_bytes((json.dumps(m, indent=1) + "\n").encode(), self.manifest_rel)


def read_tape_manifest(tape: Path) -> dict:
    """The tape's manifest as plain JSON, after the reader's checks."""
    from nodetape.tape.reader import open_tape

    open_tape(tape)  # validates the manifest and every part (a damaged tape is a TapeError naming it)
    try:
        return json.loads((tape / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise TapeError(f"{tape}/manifest.json: cannot read ({e})", str(tape)) from None


def tape_parts(tape: Path, manifest: dict) -> list[tuple[str, Path, int]]:
    """(table, file, index) of every sealed part the tape keeps, in table then index order."""
    from nodetape.tape.reader import list_parts
    from nodetape.tape.retention import part_index

    out = []
    for t in TABLES:
        first = ((manifest.get("tables") or {}).get(t.name) or {}).get("first_part") or 0
        for p in list_parts(tape, t.name, first):
            out.append((t.name, p, part_index(p.name)))
    return out


def push_tape(tape: Path, store: StoreFS, *, host: str | None = None, progress=None) -> PushStats:
    manifest = read_tape_manifest(tape)
    target = TapeTarget(store, manifest, host)
    stats = PushStats(tapes=1)
    parts = tape_parts(tape, manifest)
    for i, (table, path, index) in enumerate(parts, 1):
        target.push_part(table, path, index, stats)
        if progress:
            progress(tape, i, len(parts), stats)
    target.write_manifest()
    return stats


def push(tapes: list[str | os.PathLike], store_location: str, *, host: str | None = None,
         stream=sys.stderr, quiet: bool = False) -> PushStats:
    """Push every tape into the store; progress and a summary on `stream`."""
    if not tapes:
        raise UserError("push: give TAPE... and STORE")
    if host is not None and len(tapes) > 1:
        raise UserError("--host: one label for several tapes would merge their hosts; push them one at a time")
    store = open_fs(store_location, create=True)
    total = PushStats()
    start = time.monotonic()
    live = stream is not None and not quiet and stream.isatty()

    def progress(tape, i, n, st):
        if live:
            stream.write(f"\rpush {tape}: {i}/{n} parts, {(total.bytes_pushed + st.bytes_pushed) / 1e6:.1f} MB")
            stream.flush()

    for t in tapes:
        total.add(push_tape(Path(t), store, host=host, progress=progress))
    total.seconds = time.monotonic() - start
    if stream is not None and not quiet:
        if live:
            stream.write("\n")
        stream.write(summary_line(total, store_location) + "\n")
    return total


def summary_line(st: PushStats, where: str) -> str:
    rate = st.parts_pushed / st.seconds if st.seconds > 0 else 0.0
    line = (f"pushed {st.parts_pushed} parts ({st.bytes_pushed / 1e6:.2f} MB) of {st.tapes} tape(s) to {where} "
            f"in {st.seconds:.2f} s ({rate:.0f} parts/s); {st.parts_skipped} already there")
    if st.conflicts:
        line += f"; {len(st.conflicts)} conflict(s), first: {st.conflicts[0]}"
    return line
