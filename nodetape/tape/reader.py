"""Open tapes and expose their tables as DuckDB views.

Each view has every column of the declared schema (columns a tape lacks are NULL),
a TIMESTAMP twin of every CLOCK_BOOTTIME column (`ts_ns` -> `ts`, in UTC), and a
`host` column, so one query runs on any tape, or on several tapes at once.

Which parts make a tape: the closed parts on disk (`part-NNNNNN.parquet`; temp
files of a killed writer are ignored), minus those the manifest has retired
(index below the table's `first_part`), minus those a compacted part
`part-AAAAAA-BBBBBB.parquet` on disk supersedes (compact.py). The folder is trusted over the manifest's
part list because a SIGKILL between a part's rename and the manifest rewrite
leaves a complete part the manifest does not name; a part that vanishes while
the tape is being opened (retention in a live recorder) is skipped. The recorder
unlinks retired parts only a grace period after the manifest dropped them, so a
query started just before still finds them.

Integrity (integrity.py): a CLOSED tape must hold exactly the parts its
manifest names, each of the recorded size and row count; anything else is a
TapeError naming the part (exit 2), unless the caller passes
`allow_damaged=True`, which skips the damaged parts and says which on stderr.
A footer claiming more rows than its file can hold is damage on any tape.

Wall time: `ts` uses the manifest's clock pairs (CLOCK_BOOTTIME, CLOCK_REALTIME):
each row takes the offset of the nearest preceding pair (the first pair for rows
before it), so an NTP step during a recording does not shift earlier rows. One
pair (the usual case) is a constant; a few are a short CASE.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from nodetape.core.errors import TapeError
from nodetape.tape import clockmap
from nodetape.tape.format import Manifest, read_manifest
from nodetape.tape.integrity import Damage, check_listing, check_part, check_rows, check_size
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
    manifest: Manifest
    parts: dict[str, list[Path]]
    # column names of each part, read once when validating
    columns: dict[Path, set[str]] = field(default_factory=dict)
    # what was skipped (allow_damaged=True): one line per damaged part
    skipped: list[str] = field(default_factory=list)

    @property
    def host(self) -> str:
        return str(self.manifest.host.get("hostname") or self.path.name)

    @property
    def offset_ns(self) -> int:
        """The offset of the first clock pair: realtime = boottime + offset at the start."""
        return self.manifest.clock.offset_ns

    @property
    def clock_pairs(self) -> list[tuple[int, int]]:
        """(boottime_ns, offset_ns) sorted by boottime; at least one."""
        pairs = sorted((b, r - b) for b, r in self.manifest.clock.pairs)
        return pairs or [(0, self.offset_ns)]

    def offset_at(self, boot_ns: int) -> int:
        """realtime - boottime in effect at `boot_ns` (the nearest preceding clock pair)."""
        return clockmap.offset_at(boot_ns, self.clock_pairs)

    def offset_sql(self, column: str) -> str:
        return clockmap.offset_sql(column, self.clock_pairs)


def _check_schema_version(manifest: Manifest, path: Path) -> None:
    v = manifest.schema_version
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
    `first_part`) still waiting for their unlink, and the inputs of a compacted
    part (retention.visible_parts).
    """
    from nodetape.tape.retention import visible_parts

    folder = tape / table
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as e:
        raise TapeError(f"{folder}: cannot list parts: {e.strerror}", str(folder)) from None
    return [folder / n for n in visible_parts(names, first_part)]


def _same_type(found: pa.DataType, declared: pa.DataType) -> bool:
    if pa.types.is_dictionary(found):
        found = found.value_type
    if pa.types.is_dictionary(declared):
        declared = declared.value_type
    if pa.types.is_large_string(found):
        found = pa.string()
    return found == declared


class _Footer:
    """A part's footer: its column names and row count (read once, no fd kept)."""

    def __init__(self, names: set[str], rows: int, size: int):
        self.names, self.rows, self.size = names, rows, size


def _validate_part(part: Path, t: Table) -> _Footer | None:
    """The part's footer; None if it vanished; TapeError naming it if damaged or foreign."""
    try:
        size = part.stat().st_size
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
    _check_footer_nulls(part, meta, t, arrow_schema)
    return _Footer(names, meta.num_rows, size)


def _check_footer_nulls(part: Path, meta, t: Table, arrow_schema: pa.Schema) -> None:
    """A NULL in a non-null column, as the footer's own statistics count it (no data read)."""
    for c in t.columns:
        if c.nullable or c.name not in arrow_schema.names:
            continue
        i = arrow_schema.get_field_index(c.name)
        for g in range(meta.num_row_groups):
            st = meta.row_group(g).column(i).statistics
            if st is not None and st.has_null_count and st.null_count:
                raise TapeError(f"{part}: {st.null_count} NULL in non-null column {c.name}", str(part))


def _open_table(p: Path, m: Manifest, t: Table, damage: list[Damage]) -> tuple[list[Path], dict[Path, set[str]]]:
    """The sound parts of table t and their columns; damaged ones go to `damage`."""
    entry = m.tables.get(t.name)
    ps = list_parts(p, t.name, (entry.first_part or 0) if entry else 0)
    if m.closed:
        listing = check_listing(m, p / t.name, t.name, ps)
        damage += listing
        unnamed = {d.path for d in listing}
        ps = [part for part in ps if part not in unnamed]
    kept, columns, rows = [], {}, 0
    for part in ps:
        bad = check_size(m, part, t.name)
        if bad is not None:
            damage.append(bad)
            continue
        try:
            footer = _validate_part(part, t)
        except TapeError as e:
            damage.append(Damage(part, str(e).removeprefix(f"{part}: ")))
            continue
        if footer is None:
            if m.closed:
                damage.append(Damage(part, "part vanished while the tape was opened"))
            continue
        bad = check_part(m, part, t.name, footer.rows, footer.size)
        if bad is not None:
            damage.append(bad)
            continue
        kept.append(part)
        columns[part] = footer.names
        rows += footer.rows
    if len(kept) == len(ps) and not any(d.path.parent == p / t.name for d in damage):
        bad = check_rows(m, p / t.name, t.name, rows)
        if bad is not None:
            damage.append(bad)
    return kept, columns


def open_tape(path: str | os.PathLike, validate: bool = True, *, allow_damaged: bool = False) -> Tape:
    """Open one tape: its manifest (validated) and its sound parts.

    Damage (integrity.py) is a TapeError naming the first damaged part, or with
    `allow_damaged` the damaged parts are left out and listed in `Tape.skipped`.
    Parts are paths: nothing is kept open, callers open parts as they read them.
    """
    p = Path(path)
    manifest = read_manifest(p)
    _check_schema_version(manifest, p)
    parts: dict[str, list[Path]] = {}
    columns: dict[Path, set[str]] = {}
    damage: list[Damage] = []
    for t in TABLES:
        if validate:
            parts[t.name], cols = _open_table(p, manifest, t, damage)
            columns.update(cols)
        else:
            entry = manifest.tables.get(t.name)
            parts[t.name] = list_parts(p, t.name, (entry.first_part or 0) if entry else 0)
    if damage and not allow_damaged:
        d = damage[0]
        more = f" (and {len(damage) - 1} more; `nodetape verify` lists them)" if len(damage) > 1 else ""
        raise TapeError(f"{d.line()}{more}", str(d.path))
    return Tape(p, manifest, parts, columns, [d.line() for d in damage])


def open_tapes(paths, *, allow_damaged: bool = False, stderr=None) -> list[Tape]:
    """Open every tape; with `allow_damaged`, damaged parts are skipped and each is named on stderr."""
    if not paths:
        raise TapeError("no tape given")
    tapes = [open_tape(p, allow_damaged=allow_damaged) for p in paths]
    err = stderr if stderr is not None else sys.stderr
    for t in tapes:
        for line in t.skipped:
            print(f"nodetape: skipped damaged {line}", file=err)
    return tapes


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
                    gone = [p for p in tape.parts[t.name] if p not in kept]
                    if gone and tape.manifest.closed:
                        # nothing retires parts of a closed tape: it was damaged after opening
                        raise TapeError(f"{gone[0]}: part named by the manifest is missing", str(gone[0])) from None
                    vanished |= bool(gone)
                    tape.parts[t.name] = kept
                if not vanished or attempt == 2:
                    # retention in a live recorder removes parts; anything else is damage
                    raise _blame_part(con, tapes, t, e) from None
    return con
