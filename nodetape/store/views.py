"""DuckDB views over a fleet store: one Parquet scan per table, not one per tape.

`reader.connect()` unions one `read_parquet` per tape, which is right for a few tapes
and slow for a thousand (measured on the 1,000-host bench store: 38 s to create the
views, 215 s for pod_births). Here each table is one `read_parquet` over all its
selected files, joined on the file name to a small table naming each file's tape,
host and clock offset; columns are the views' columns of reader.table_select (the
declared schema, NULL where no part has a column, a TIMESTAMP twin of every boottime
column computed with the tape's clock pairs, and `host`), so queries see the same rows.
"""

from __future__ import annotations

import pyarrow as pa

from nodetape.schemas import TABLES

FILES_TABLE = "_nodetape_store_files"
FILE_COL = "_nodetape_file"


class StoreTapes(list):
    """The tapes of a fleet store (reader.Tape objects); `.connect()` builds the store views."""

    def connect(self, con=None):
        return connect(self, con)


def connect_any(tapes, con=None):
    """Views over tapes: the store's single-scan views for a StoreTapes, reader.connect otherwise."""
    if isinstance(tapes, StoreTapes):
        return connect(tapes, con)
    from nodetape.tape.reader import connect as connect_tapes

    return connect_tapes(tapes, con)


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def offset_sql(column: str, tapes) -> str:
    """realtime - boottime for `column`: the file's tape offset; a CASE only for tapes with several pairs."""
    whens = []
    for i, t in enumerate(tapes):
        pairs = t.clock_pairs
        if len({o for _, o in pairs}) > 1:
            inner = " ".join(f'WHEN "{column}" >= {b} THEN {o}' for b, o in reversed(pairs[1:]))
            whens.append(f"WHEN f._tape = {i} THEN (CASE {inner} ELSE {pairs[0][1]} END)")
    return f"(CASE {' '.join(whens)} ELSE f._off END)" if whens else "f._off"


def _files_table(tapes) -> pa.Table:
    rows = [(str(p), i, t.host, t.clock_pairs[0][1]) for i, t in enumerate(tapes)
            for parts in t.parts.values() for p in parts]
    return pa.table({"_file": [r[0] for r in rows], "_tape": pa.array([r[1] for r in rows], pa.int32()),
                     "host": [r[2] for r in rows], "_off": pa.array([r[3] for r in rows], pa.int64())})


def table_sql(con, tapes, t) -> str:
    from nodetape.tape.reader import duck_type

    paths = [str(p) for tape in tapes for p in tape.parts[t.name]]
    if paths:
        scan = f"read_parquet([{', '.join(map(_sql_str, paths))}], union_by_name = true, filename = '{FILE_COL}')"
        present = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()}
    else:
        scan, present = None, set()
    exprs = [f'p."{c.name}"' if c.name in present else f'CAST(NULL AS {duck_type(c.type)}) AS "{c.name}"'
             for c in t.columns]
    for tc in t.time_columns:
        exprs.append(f'make_timestamp((p."{tc}" + {offset_sql(tc, tapes)}) // 1000) AS "{tc[:-3]}"'
                     if tc in present else f'CAST(NULL AS TIMESTAMP) AS "{tc[:-3]}"')
    if scan is None:
        return f"SELECT {', '.join(exprs)}, CAST(NULL AS VARCHAR) AS host FROM (SELECT 1 WHERE false) p"
    return (f"SELECT {', '.join(exprs)}, f.host FROM {scan} p "
            f"JOIN {FILES_TABLE} f ON p.{FILE_COL} = f._file")


def connect(tapes, con=None):
    """A DuckDB connection with one view per table over the store's tapes; a damaged part is a TapeError naming it."""
    import duckdb

    from nodetape.tape.reader import _blame_part

    con = con or duckdb.connect()
    # a view is scanned several times per query; each scan of thousands of small parts
    # would otherwise re-read every footer (measured: ~140 us per file here)
    con.execute("SET parquet_metadata_cache = true")
    con.execute("SET enable_progress_bar = false")  # stdout is for rows
    files = _files_table(tapes)
    con.register("_nodetape_files_arrow", files)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {FILES_TABLE} AS SELECT * FROM _nodetape_files_arrow")
    con.unregister("_nodetape_files_arrow")
    for t in TABLES:
        try:
            con.execute(f'CREATE OR REPLACE VIEW "{t.name}" AS {table_sql(con, tapes, t)}')
        except duckdb.Error as e:
            raise _blame_part(con, list(tapes), t, e) from None
    return con
