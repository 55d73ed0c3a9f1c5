"""The compacted layout of a fleet store: names, the index, and reading it back.

`nodetape compact STORE` (store/compact.py) merges a table's parts of one date across
all hosts into one file, so a fleet query opens a few files instead of thousands:

    STORE/<table>/_compacted/date=<D>/<cid>.parquet   rows of many parts, sorted by host then time
    STORE/<table>/_compacted/date=<D>/index.json      the commit point: files and the parts they cover

Every row keeps where it came from: `_nodetape_host` (its host partition) and
`_nodetape_src`, a 64-bit id of its original part's store path (`src_id`); the index
maps each covered part's path to its id, tape and time range. A reader lists the
per-host parts first, then reads the index: a part the index covers is skipped (its
rows are in a compacted file), so a store holding both (a compaction killed after its
commit, before removing them) gives each row once. A compacted file the index does not
name (a compaction killed before its commit) is never read.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from nodetape.core.errors import TapeError
from nodetape.store import layout

COMPACTED_DIR = "_compacted"
INDEX = "index.json"
HOST_COL = "_nodetape_host"
SRC_COL = "_nodetape_src"
INDEX_FORMAT = 1


def src_id(rel: str) -> int:
    """The id of an original part (its store path): a signed 64-bit BLAKE2b of the path."""
    return int.from_bytes(hashlib.blake2b(rel.encode(), digest_size=8).digest(), "little", signed=True)


def date_dir(table: str, date: str) -> str:
    return f"{layout.check_name('table', table)}/{COMPACTED_DIR}/date={date}"


def index_path(table: str, date: str) -> str:
    return f"{date_dir(table, date)}/{INDEX}"


def empty_index(table: str, date: str) -> dict:
    return {"format": INDEX_FORMAT, "table": table, "date": date, "files": [], "parts": {}}


def read_index(store, table: str, date: str) -> dict:
    """The committed index of a table's date (an empty one if none); TapeError naming a malformed one."""
    rel = index_path(table, date)
    try:
        raw = store.read_bytes(rel)
    except FileNotFoundError:
        return empty_index(table, date)
    except OSError as e:
        if store.size(rel) is None:
            return empty_index(table, date)
        raise TapeError(f"{store.full(rel)}: cannot read ({e})", store.full(rel)) from None
    try:
        idx = json.loads(raw)
        if not isinstance(idx.get("files"), list) or not isinstance(idx.get("parts"), dict):
            raise ValueError("no files/parts")
        if idx.get("format") != INDEX_FORMAT:
            raise ValueError(f"format {idx.get('format')!r}, this nodetape reads {INDEX_FORMAT}")
        for part, rec in idx["parts"].items():
            if not isinstance(rec, dict) or not all(isinstance(rec.get(k), str) for k in ("host", "tape", "file")):
                raise ValueError(f"part {part!r}: not a record with host, tape and file")
        if not all(isinstance(f, dict) and isinstance(f.get("file"), str) for f in idx["files"]):
            raise ValueError("files: not records with a file name")
    except (ValueError, AttributeError) as e:
        raise TapeError(f"{store.full(rel)}: malformed compaction index ({str(e).splitlines()[0]})",
                        store.full(rel)) from None
    return idx


def compacted_dates(store, table: str) -> list[str]:
    out = []
    for name, is_dir in store.list(f"{table}/{COMPACTED_DIR}"):
        date = layout.partition_value(name, "date")
        if is_dir and date is not None:
            out.append(date)
    return sorted(out)


@dataclass
class CompactedFile:
    """One compacted file as a selection keeps it: its local path and which of its sources are selected."""

    path: Path
    srcs: dict[int, tuple[str, str, str]] = field(default_factory=dict)  # selected src id -> (host, tape, part name)
    total: int = 0  # sources the file holds
    hosts: set[str] = field(default_factory=set)  # hosts of the selected sources


def materialize(files: list[CompactedFile], table: str, out_dir: Path) -> dict[tuple[str, str], list[Path]]:
    """Write the selected rows of compacted files back as one Parquet part per original part, under
    out_dir (for commands that walk parts: replay, info, report); (host, tape) -> part paths."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from nodetape.schemas import TABLES

    schema = next(t for t in TABLES if t.name == table).schema
    out: dict[tuple[str, str], list[Path]] = {}
    for f in files:
        try:
            data = pq.read_table(f.path)
        except Exception as e:  # pyarrow's errors for a damaged file vary
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise TapeError(f"{f.path}: corrupt compacted Parquet file ({first})", str(f.path)) from None
        srcs = data.column(SRC_COL)
        for sid, (host, tape, name) in sorted(f.srcs.items(), key=lambda kv: kv[1]):
            rows = data.filter(pc.equal(srcs, sid))
            keep = [c for c in schema.names if c in data.column_names and rows.column(c).null_count < rows.num_rows]
            folder = out_dir / host / tape / table
            folder.mkdir(parents=True, exist_ok=True)
            dst = folder / name
            pq.write_table(rows.select(keep), dst)  # a column NULL on every row: absent, as in the original part
            out.setdefault((host, tape), []).append(dst)
    return out


