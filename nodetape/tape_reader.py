"""Open tapes and expose their tables as DuckDB views.

Each view has every column of the declared schema (columns a tape lacks are NULL),
a TIMESTAMP twin of every CLOCK_BOOTTIME column (`ts_ns` -> `ts`, in UTC), and a
`host` column, so one query runs on any tape, or on several tapes at once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import TapeError
from .manifest import read_manifest
from .schemas import SCHEMA_MAJOR, TABLES, Table

_DUCK_TYPES = {
    pa.int8(): "TINYINT", pa.int16(): "SMALLINT", pa.int32(): "INTEGER", pa.int64(): "BIGINT",
    pa.uint8(): "UTINYINT", pa.uint16(): "USMALLINT", pa.uint32(): "UINTEGER", pa.uint64(): "UBIGINT",
    pa.float32(): "FLOAT", pa.float64(): "DOUBLE", pa.string(): "VARCHAR", pa.bool_(): "BOOLEAN",
}


def duck_type(t: pa.DataType) -> str:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return _DUCK_TYPES[t]


@dataclass
class Tape:
    path: Path
    manifest: dict
    parts: dict[str, list[Path]]

    @property
    def host(self) -> str:
        return str(self.manifest.get("host", {}).get("hostname") or self.path.name)

    @property
    def offset_ns(self) -> int:
        return int(self.manifest["clock"]["offset_ns"])


def _check_schema_version(manifest: dict, path: Path) -> None:
    v = manifest["schema_version"]
    try:
        major = int(str(v).split(".")[0])
    except ValueError:
        raise TapeError(f"{path / 'manifest.json'}: bad schema_version {v!r}", str(path)) from None
    if major > SCHEMA_MAJOR:
        raise TapeError(
            f"{path}: tape schema {v} is newer than this nodetape reads ({SCHEMA_MAJOR}.x); upgrade nodetape",
            str(path),
        )


def list_parts(tape: Path, table: str) -> list[Path]:
    """Closed parts of a table, in order; temp files of a killed writer are ignored."""
    folder = tape / table
    try:
        names = sorted(n for n in os.listdir(folder) if n.startswith("part-") and n.endswith(".parquet"))
    except FileNotFoundError:
        return []
    return [folder / n for n in names]


def _validate_part(part: Path, t: Table) -> None:
    try:
        meta = pq.read_metadata(part)
    except Exception as e:  # pyarrow raises ArrowInvalid, OSError, ... for damaged files
        raise TapeError(f"{part}: corrupt or truncated Parquet part ({str(e).splitlines()[0]})", str(part)) from None
    names = set(meta.schema.names)
    if t.time_column not in names:
        raise TapeError(f"{part}: not a {t.name} part (no {t.time_column} column)", str(part))


def open_tape(path: str | os.PathLike, validate: bool = True) -> Tape:
    p = Path(path)
    manifest = read_manifest(p)
    _check_schema_version(manifest, p)
    parts: dict[str, list[Path]] = {}
    for t in TABLES:
        ps = list_parts(p, t.name)
        if validate:
            for part in ps:
                _validate_part(part, t)
        parts[t.name] = ps
    return Tape(p, manifest, parts)


def open_tapes(paths) -> list[Tape]:
    if not paths:
        raise TapeError("no tape given")
    return [open_tape(p) for p in paths]


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _present_columns(parts: list[Path]) -> set[str]:
    cols: set[str] = set()
    for part in parts:
        cols.update(pq.read_schema(part).names)
    return cols


def table_select(tape: Tape, t: Table) -> str:
    """SQL selecting one tape's rows of table t with the full view columns."""
    parts = tape.parts[t.name]
    present = _present_columns(parts) if parts else set()
    exprs = []
    for c in t.columns:
        if c.name in present:
            exprs.append(f'"{c.name}"')
        else:
            exprs.append(f'CAST(NULL AS {duck_type(c.type)}) AS "{c.name}"')
    for tc in t.time_columns:
        if tc in present:
            exprs.append(f'make_timestamp(("{tc}" + {tape.offset_ns}) // 1000) AS "{tc[:-3]}"')
        else:
            exprs.append(f'CAST(NULL AS TIMESTAMP) AS "{tc[:-3]}"')
    exprs.append(f"{_sql_str(tape.host)} AS host")
    select = ", ".join(exprs)
    if parts:
        files = "[" + ", ".join(_sql_str(str(p)) for p in parts) + "]"
        return f"SELECT {select} FROM read_parquet({files}, union_by_name = true)"
    # no rows: the same columns, computed over an empty relation
    return f"SELECT {select} FROM (SELECT 1 WHERE false)"


def connect(tapes: list[Tape], con=None):
    """A DuckDB connection with one view per table over all given tapes."""
    import duckdb  # lazy: keeps `nodetape --help` fast

    con = con or duckdb.connect()
    for t in TABLES:
        sql = " UNION ALL ".join(table_select(tape, t) for tape in tapes)
        con.execute(f'CREATE OR REPLACE VIEW "{t.name}" AS {sql}')
    return con
