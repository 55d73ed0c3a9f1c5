"""Queries over a fleet store or tapes, on DuckDB or Spark: what `query`/`sql` run with
`--hosts`, `--from`, `--to` or `--engine` (docs/fleet.md).

TAPE may be one store (a folder holding `_tapes/`, or an s3:// / gs:// URL) or tape
folders; the narrowing options only apply to a store.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa

from nodetape.core.errors import QueryError, UserError

ENGINES = ("duckdb", "spark")


def open_tapes_or_store(paths, hosts: str | None = None, from_: str | None = None, to: str | None = None):
    from nodetape.store.reader import is_store, open_store, parse_wall
    from nodetape.tape.reader import open_tapes

    paths = [str(p) for p in paths]
    stores = [p for p in paths if is_store(p)]
    if stores:
        if len(paths) > 1:
            raise UserError(f"{stores[0]}: give one fleet store alone (not with other tapes or stores)")
        start, end = parse_wall(from_, "--from"), parse_wall(to, "--to")
        if start is not None and end is not None and end <= start:
            raise UserError("--to: must be after --from")
        return open_store(paths[0], hosts, start, end)
    if hosts is not None or from_ is not None or to is not None:
        opt = "--hosts" if hosts is not None else "--from" if from_ is not None else "--to"
        raise UserError(f"{opt}: narrows a fleet store, and {paths[0]} is a tape folder")
    return open_tapes([Path(p) for p in paths])


def _check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise UserError(f"--engine: unknown engine {engine!r} (engines: {', '.join(ENGINES)})")


def _duck(tapes, text: str, params: dict | None) -> pa.Table:
    import duckdb

    from nodetape.store.views import connect_any

    con = connect_any(tapes)
    try:
        from nodetape.queries.macros import register  # the time-bucketing macros, where present
        register(con)
    except ImportError:
        pass
    try:
        rel = con.sql(text, params=params or None)
        if rel is None:
            return pa.table({})
        return rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
    except duckdb.Error as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise QueryError(f"SQL error: {first}") from None


def query(paths, name: str, params: dict[str, str] | None = None, *, hosts=None, from_=None, to=None,
          engine: str = "duckdb", spark_master: str | None = None) -> pa.Table:
    from nodetape.queries import get

    _check_engine(engine)
    q = get(name)
    bound = q.bind(params or {})
    tapes = open_tapes_or_store(paths, hosts, from_, to)
    if engine == "spark":
        from nodetape import spark

        return spark.run_sql(tapes, q.sql, bound, master=spark_master)
    return _duck(tapes, q.sql, bound)


def sql(paths, text: str, *, hosts=None, from_=None, to=None, engine: str = "duckdb",
        spark_master: str | None = None) -> pa.Table:
    _check_engine(engine)
    tapes = open_tapes_or_store(paths, hosts, from_, to)
    if engine == "spark":
        from nodetape import spark

        return spark.run_sql(tapes, text, {}, master=spark_master)
    return _duck(tapes, text, None)


def push(tapes, store: str, *, host: str | None = None, quiet: bool = False):
    """`nodetape push`: UserError (exit 2) when any part conflicted."""
    import sys

    from nodetape.store.push import push as do_push

    stats = do_push([Path(t) for t in tapes], store, host=host, stream=sys.stderr, quiet=quiet)
    if stats.conflicts:
        raise UserError(stats.conflicts[0] + (f" (and {len(stats.conflicts) - 1} more)" if len(stats.conflicts) > 1 else ""))
    return stats
