"""Open tapes and expose their tables as DuckDB views.

Each view has every column of the declared schema (columns a tape lacks are NULL),
a TIMESTAMP twin of every CLOCK_BOOTTIME column (`ts_ns` -> `ts`, in UTC), and a
`host` column, so one query runs on any tape, or on several tapes at once.

Which parts make a tape: the closed parts on disk (`part-NNNNNN.parquet`; temp
files of a killed writer are ignored), minus those the manifest has retired
(index below the table's `first_part`). The folder is trusted over the manifest's
part list because a SIGKILL between a part's rename and the manifest rewrite
leaves a complete part the manifest does not name; a part that vanishes while
the tape is being opened (retention in a live recorder) is skipped. The recorder
unlinks retired parts only a grace period after the manifest dropped them, so a
query started just before still finds them.

Wall time: `ts` uses the manifest's clock pairs (CLOCK_BOOTTIME, CLOCK_REALTIME):
each row takes the offset of the nearest preceding pair (the first pair for rows
before it), so an NTP step during a recording does not shift earlier rows. One
pair (the usual case) is a constant; a few are a short CASE.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from nodetape.core.errors import TapeError
from nodetape.tape import clockmap
from nodetape.tape.format import read_manifest
from nodetape.schemas import SCHEMA_MAJOR, TABLES, Table

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
    # column names of each part, read once when validating
    columns: dict[Path, set[str]] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return str((self.manifest.get("host") or {}).get("hostname") or self.path.name)

    @property
    def offset_ns(self) -> int:
        """The offset of the first clock pair: realtime = boottime + offset at the start."""
        return int(self.manifest["clock"]["offset_ns"])

    @property
    def clock_pairs(self) -> list[tuple[int, int]]:
        """(boottime_ns, offset_ns) sorted by boottime; at least one."""
        return clockmap.clock_pairs(self.manifest["clock"])

    def offset_at(self, boot_ns: int) -> int:
        """realtime - boottime in effect at `boot_ns` (the nearest preceding clock pair)."""
        return clockmap.offset_at(boot_ns, self.clock_pairs)

    def offset_sql(self, column: str) -> str:
        pairs = self.clock_pairs
        if len({o for _, o in pairs}) == 1:
            return str(pairs[0][1])
        whens = " ".join(f"WHEN {column} >= {b} THEN {o}" for b, o in reversed(pairs[1:]))
        return f"(CASE {whens} ELSE {pairs[0][1]} END)"


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


def list_parts(tape: Path, table: str, first_part: int = 0) -> list[Path]:
    """Closed parts of a table, in order, from index `first_part` on.

    Temp files of a killed writer are ignored, and so are retired parts (below
    `first_part`) still waiting for their unlink.
    """
    from nodetape.tape.retention import part_index

    folder = tape / table
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as e:
        raise TapeError(f"{folder}: cannot list parts: {e.strerror}", str(folder)) from None
    indexed = sorted((i, n) for n in names if (i := part_index(n)) is not None and i >= first_part)
    return [folder / n for _, n in indexed]


def _same_type(found: pa.DataType, declared: pa.DataType) -> bool:
    if pa.types.is_dictionary(found):
        found = found.value_type
    if pa.types.is_dictionary(declared):
        declared = declared.value_type
    if pa.types.is_large_string(found):
        found = pa.string()
    return found == declared


def _validate_part(part: Path, t: Table) -> set[str] | None:
    """The part's column names; None if it vanished; TapeError naming it if damaged or foreign."""
    try:
        meta = pq.read_metadata(part)
        arrow_schema = meta.schema.to_arrow_schema()
    except FileNotFoundError:
        return None  # retired by a live recorder while we were opening the tape
    except Exception as e:  # pyarrow raises ArrowInvalid, OSError, ... for damaged files
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise TapeError(f"{part}: corrupt or truncated Parquet part ({first})", str(part)) from None
    names = set(arrow_schema.names)
    if t.time_column not in names:
        raise TapeError(f"{part}: not a {t.name} part (no {t.time_column} column)", str(part))
    for c in t.columns:
        if c.name in names:
            found = arrow_schema.field(c.name).type
            if not _same_type(found, c.type):
                raise TapeError(f"{part}: column {c.name} is {found}, expected {c.type} (not a {t.name} part?)",
                                str(part))
    return names


def open_tape(path: str | os.PathLike, validate: bool = True) -> Tape:
    p = Path(path)
    manifest = read_manifest(p)
    _check_schema_version(manifest, p)
    parts: dict[str, list[Path]] = {}
    columns: dict[Path, set[str]] = {}
    for t in TABLES:
        first = (manifest["tables"].get(t.name) or {}).get("first_part") or 0
        ps = list_parts(p, t.name, first)
        if validate:
            kept = []
            for part in ps:
                cols = _validate_part(part, t)
                if cols is not None:
                    kept.append(part)
                    columns[part] = cols
            ps = kept
        parts[t.name] = ps
    return Tape(p, manifest, parts, columns)


def open_tapes(paths) -> list[Tape]:
    if not paths:
        raise TapeError("no tape given")
    return [open_tape(p) for p in paths]


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _present_columns(tape: Tape, parts: list[Path]) -> set[str]:
    cols: set[str] = set()
    for part in parts:
        known = tape.columns.get(part)
        if known is None:
            try:
                known = set(pq.read_schema(part).names)
            except Exception as e:
                first = (str(e).splitlines() or [type(e).__name__])[0]
                raise TapeError(f"{part}: corrupt or unreadable Parquet part ({first})", str(part)) from None
        cols.update(known)
    return cols


def table_select(tape: Tape, t: Table) -> str:
    """SQL selecting one tape's rows of table t with the full view columns."""
    parts = tape.parts[t.name]
    present = _present_columns(tape, parts) if parts else set()
    exprs = []
    for c in t.columns:
        if c.name in present:
            exprs.append(f'"{c.name}"')
        else:
            exprs.append(f'CAST(NULL AS {duck_type(c.type)}) AS "{c.name}"')
    for tc in t.time_columns:
        if tc in present:
            exprs.append(f'make_timestamp(("{tc}" + {tape.offset_sql(chr(34) + tc + chr(34))}) // 1000) AS "{tc[:-3]}"')
        else:
            exprs.append(f'CAST(NULL AS TIMESTAMP) AS "{tc[:-3]}"')
    exprs.append(f"{_sql_str(tape.host)} AS host")
    select = ", ".join(exprs)
    if parts:
        files = "[" + ", ".join(_sql_str(str(p)) for p in parts) + "]"
        return f"SELECT {select} FROM read_parquet({files}, union_by_name = true)"
    # no rows: the same columns, computed over an empty relation
    return f"SELECT {select} FROM (SELECT 1 WHERE false)"


def _blame_part(con, tapes: list[Tape], t: Table, err: Exception) -> TapeError:
    """Which part made DuckDB fail on table t: a TapeError naming it."""
    import duckdb

    for tape in tapes:
        for part in tape.parts[t.name]:
            try:
                con.execute(f"SELECT * FROM read_parquet({_sql_str(str(part))}) LIMIT 0")
            except duckdb.Error as e:
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                return TapeError(f"{part}: corrupt Parquet part ({first})", str(part))
    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    where = ", ".join(str(tape.path) for tape in tapes)
    return TapeError(f"{where}: cannot read table {t.name} ({first})", where)


def connect(tapes: list[Tape], con=None):
    """A DuckDB connection with one view per table over all given tapes.

    DuckDB reads each part's footer here; a footer pyarrow accepted but DuckDB
    does not is a TapeError naming the part.
    """
    import duckdb  # lazy: keeps `nodetape --help` fast

    con = con or duckdb.connect()
    for t in TABLES:
        for attempt in range(3):
            sql = " UNION ALL ".join(table_select(tape, t) for tape in tapes)
            try:
                con.execute(f'CREATE OR REPLACE VIEW "{t.name}" AS {sql}')
                break
            except duckdb.Error as e:
                vanished = False
                for tape in tapes:
                    kept = [p for p in tape.parts[t.name] if p.exists()]
                    vanished |= len(kept) != len(tape.parts[t.name])
                    tape.parts[t.name] = kept
                if not vanished or attempt == 2:
                    # retention in a live recorder removes parts; anything else is damage
                    raise _blame_part(con, tapes, t, e) from None
    return con
