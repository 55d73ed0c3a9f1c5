"""DuckDB views over a fleet store: one Parquet scan per table, not one per tape.

`reader.connect()` unions one `read_parquet` per tape, which is right for a few tapes
and slow for a thousand (measured on the 1,000-host bench store: 38 s to create the
views, 215 s for pod_births). Here each table is one `read_parquet` over all its
selected per-host parts, joined on the file name to a small table naming each file's
tape, host and clock offset, plus (UNION ALL) one `read_parquet` over the table's
compacted files (store/compacted.py), joined on `_nodetape_src` to a small table naming
each selected original part's tape, host and offset (the join also drops the rows of
parts the selection left out); with `--hosts`, a filter on `_nodetape_host` lets the
scan skip row groups of other hosts. Columns are the views' columns of
reader.table_select (the declared schema, NULL where no part has a column, a TIMESTAMP
twin of every boottime column computed with the tape's clock pairs by
clockmap.offset_sql_by_tape, and `host`), so queries see the same rows.
"""

from __future__ import annotations

import pyarrow as pa

from nodetape.schemas import TABLES
from nodetape.store import compacted as cz
from nodetape.tape import clockmap

FILES_TABLE = "_nodetape_store_files"
SRCS_TABLE = "_nodetape_store_srcs"
FILE_COL = "_nodetape_file"


class StoreTapes(list):
    """The tapes of a fleet store (reader.Tape objects); `.connect()` builds the store views.

    `compacted`: table -> [compacted.CompactedFile] holding more of these tapes' rows; `keys`: the
    (host, tape id) of each tape; `hosts`: the --hosts glob the store was opened with."""

    def __init__(self, tapes=(), *, compacted: dict | None = None, keys: list | None = None,
                 hosts: str | None = None):
        super().__init__(tapes)
        self.compacted = compacted or {}
        self.keys = keys or []
        self.hosts = hosts
        self._plain = None

    def has_compacted(self) -> bool:
        return any(self.compacted.values())

    def as_part_tapes(self):
        """These tapes with every row in per-tape parts: the compacted rows written back to parts in a
        temporary folder (removed at exit), for what walks a tape's parts (replay, info, report)."""
        if not self.has_compacted():
            return self
        if self._plain is None:
            self._plain = _write_back(self)
        return self._plain

    def connect(self, con=None):
        return connect(self, con)


def connect_any(tapes, con=None):
    """Views over tapes: the store's single-scan views for a StoreTapes, reader.connect otherwise."""
    if isinstance(tapes, StoreTapes):
        return connect(tapes, con)
    from nodetape.tape.reader import connect as connect_tapes

    return connect_tapes(tapes, con)


def _write_back(tapes: StoreTapes) -> list:
    import atexit
    import shutil
    import tempfile
    from dataclasses import replace
    from pathlib import Path

    out_dir = Path(tempfile.mkdtemp(prefix="nodetape-compacted-"))
    atexit.register(shutil.rmtree, out_dir, True)
    extra: dict = {}
    for table, files in tapes.compacted.items():
        for key, paths in cz.materialize(files, table, out_dir).items():
            extra.setdefault(key, {})[table] = paths
    plain = []
    for key, t in zip(tapes.keys, tapes):
        more = extra.get(key, {})
        parts = {name: sorted([*paths, *more.get(name, [])], key=lambda p: p.name) for name, paths in t.parts.items()}
        plain.append(replace(t, parts=parts))
    return plain


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _files_table(tapes) -> pa.Table:
    rows = [(str(p), i, t.host, t.clock_pairs[0][1]) for i, t in enumerate(tapes)
            for parts in t.parts.values() for p in parts]
    return pa.table({"_file": [r[0] for r in rows], "_tape": pa.array([r[1] for r in rows], pa.int32()),
                     "host": [r[2] for r in rows], "_off": pa.array([r[3] for r in rows], pa.int64())})


def srcs_rows(tapes) -> list[tuple[int, int, str, int]]:
    """(src id, tape position, host, first offset) of every selected original part in compacted files."""
    pos = {k: i for i, k in enumerate(getattr(tapes, "keys", []))}
    rows = {}
    for files in getattr(tapes, "compacted", {}).values():
        for f in files:
            for sid, (host, tid, _) in f.srcs.items():
                i = pos[(host, tid)]
                rows[sid] = (sid, i, host, tapes[i].clock_pairs[0][1])
    return list(rows.values())


def _srcs_table(tapes) -> pa.Table:
    rows = srcs_rows(tapes)
    return pa.table({"_src": pa.array([r[0] for r in rows], pa.int64()), "_tape": pa.array([r[1] for r in rows], pa.int32()),
                     "host": [r[2] for r in rows], "_off": pa.array([r[3] for r in rows], pa.int64())})


def host_filter(tapes, table: str, quote: str = "'") -> str | None:
    """`IN (...)` list of the hosts selected in a table's compacted files when --hosts narrowed the store."""
    if getattr(tapes, "hosts", None) is None:
        return None
    hosts = sorted({h for f in tapes.compacted.get(table, []) for h in f.hosts})
    return ", ".join(quote + h + quote for h in hosts)  # plain names (layout.check_name): no quoting to escape


def _select(con, tapes, t, scan: str) -> tuple[str, set]:
    from nodetape.tape.reader import duck_type

    present = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()}
    exprs = [f'p."{c.name}"' if c.name in present else f'CAST(NULL AS {duck_type(c.type)}) AS "{c.name}"'
             for c in t.columns]
    pairs = [tape.clock_pairs for tape in tapes]
    for tc in t.time_columns:
        off = clockmap.offset_sql_by_tape(f'p."{tc}"', pairs)
        exprs.append(f'make_timestamp((p."{tc}" + {off}) // 1000) AS "{tc[:-3]}"'
                     if tc in present else f'CAST(NULL AS TIMESTAMP) AS "{tc[:-3]}"')
    return ", ".join(exprs) + ", f.host", present


def table_sql(con, tapes, t) -> str:
    from nodetape.tape.reader import duck_type

    selects = []
    paths = [str(p) for tape in tapes for p in tape.parts[t.name]]
    if paths:
        scan = f"read_parquet([{', '.join(map(_sql_str, paths))}], union_by_name = true, filename = '{FILE_COL}')"
        cols, _ = _select(con, tapes, t, scan)
        selects.append(f"SELECT {cols} FROM {scan} p JOIN {FILES_TABLE} f ON p.{FILE_COL} = f._file")
    cfiles = [str(f.path) for f in getattr(tapes, "compacted", {}).get(t.name, [])]
    if cfiles:
        scan = f"read_parquet([{', '.join(map(_sql_str, cfiles))}], union_by_name = true)"
        cols, _ = _select(con, tapes, t, scan)
        hosts = host_filter(tapes, t.name)
        where = f" WHERE p.{cz.HOST_COL} IN ({hosts})" if hosts else ""
        selects.append(f"SELECT {cols} FROM {scan} p JOIN {SRCS_TABLE} f ON p.{cz.SRC_COL} = f._src{where}")
    if not selects:
        nulls = [f'CAST(NULL AS {duck_type(c.type)}) AS "{c.name}"' for c in t.columns]
        nulls += [f'CAST(NULL AS TIMESTAMP) AS "{tc[:-3]}"' for tc in t.time_columns]
        return f"SELECT {', '.join(nulls)}, CAST(NULL AS VARCHAR) AS host FROM (SELECT 1 WHERE false) p"
    return " UNION ALL ".join(selects)


def _temp_table(con, name: str, data: pa.Table) -> None:
    con.register("_nodetape_arrow", data)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM _nodetape_arrow")
    con.unregister("_nodetape_arrow")


def connect(tapes, con=None):
    """A DuckDB connection with one view per table over the store's tapes; a damaged part is a TapeError naming it."""
    import duckdb

    from nodetape.tape.reader import _blame_part

    con = con or duckdb.connect()
    # a view is scanned several times per query; each scan of thousands of small parts
    # would otherwise re-read every footer (measured: ~140 us per file here)
    con.execute("SET parquet_metadata_cache = true")
    con.execute("SET enable_progress_bar = false")  # stdout is for rows
    _temp_table(con, FILES_TABLE, _files_table(tapes))
    _temp_table(con, SRCS_TABLE, _srcs_table(tapes))
    for t in TABLES:
        try:
            con.execute(f'CREATE OR REPLACE VIEW "{t.name}" AS {table_sql(con, tapes, t)}')
        except duckdb.Error as e:
            raise _blame_compacted(con, tapes, t) or _blame_part(con, list(tapes), t, e) from None
    return con


def _blame_compacted(con, tapes, t):
    """A TapeError naming the compacted file DuckDB cannot read, None if they all read."""
    import duckdb

    from nodetape.core.errors import TapeError

    for f in getattr(tapes, "compacted", {}).get(t.name, []):
        try:
            con.execute(f"SELECT * FROM read_parquet({_sql_str(str(f.path))}) LIMIT 0")
        except duckdb.Error as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            return TapeError(f"{f.path}: corrupt compacted Parquet file ({first})", str(f.path))
    return None
