"""The Python API the CLI is a thin layer over.

Each function takes plain values, does the work, and returns data (Arrow tables,
dicts); rendering and exit codes belong to cli.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow as pa

from nodetape.core.errors import QueryError, SourceUnavailable, UserError
from nodetape.tape.reader import Tape, connect, open_tapes


# -- recording ---------------------------------------------------------------
def record(
    out: str | os.PathLike,
    *,
    duration_ns: int | None = None,
    interval_ns: int = 1_000_000_000,
    flush_ns: int = 2_000_000_000,
    sources: str | Sequence[str] | None = None,
    cgroup_root: str | os.PathLike = "/sys/fs/cgroup",
    proc_root: str | os.PathLike = "/proc",
    sys_root: str | os.PathLike = "/sys",
    options: dict | None = None,
    progress: Callable | None = None,
    retain_ns: int | None = None,
    max_tape_bytes: int | None = None,
    snapshot_on: Sequence[str] = (),
    snapshot_dir: str | os.PathLike | None = None,
    snapshot_cooldown_ns: int | None = None,
    push_store: str | None = None,
) -> dict:
    """Record into the tape folder `out` until the duration ends or SIGINT/SIGTERM; returns the manifest.

    Flight-recorder mode (issue 9): `retain_ns` keeps only the last window of parts,
    `max_tape_bytes` bounds the tape's size; `snapshot_on` lists triggers
    ("psi memory some > 20%", "oom_kill") that save the window into `snapshot_dir`.
    """
    from .recorder.loop import Recorder, RecordOptions
    from .recorder.registry import parse_source_list
    from .recorder.source import RecordContext

    if isinstance(sources, str) or sources is None:
        try:
            names = parse_source_list(sources)
        except ValueError as e:
            raise UserError(f"--sources: {e}") from None
    else:
        names = list(sources)
    for label, p in (("--cgroup-root", cgroup_root), ("--proc-root", proc_root)):
        if not Path(p).is_dir():
            raise UserError(f"{label} {p}: no such folder")
    _check_psi_triggers(options or {}, proc_root)
    ctx = RecordContext(
        cgroup_root=Path(cgroup_root), proc_root=Path(proc_root), sys_root=Path(sys_root),
        interval_ns=interval_ns, options=dict(options or {}),
    )
    from .recorder.triggers import parse_trigger

    try:
        triggers = [parse_trigger(s) for s in snapshot_on]
    except ValueError as e:
        raise UserError(f"--snapshot-on: {e}") from None
    opts = RecordOptions(out=Path(out), sources=names, ctx=ctx, duration_ns=duration_ns,
                         flush_interval_ns=flush_ns, progress=progress, retain_ns=retain_ns,
                         max_tape_bytes=max_tape_bytes, snapshot_on=triggers,
                         snapshot_dir=Path(snapshot_dir) if snapshot_dir else None)
    if snapshot_cooldown_ns:
        opts.snapshot_cooldown_ns = snapshot_cooldown_ns
    if push_store:  # flight-recorder mode with a fleet store (docs/fleet.md)
        from .store.storefs import check_location

        opts.push_store = check_location(push_store)
    return Recorder(opts).run()


def _check_psi_triggers(options: dict, proc_root) -> None:
    """A bad --psi-trigger is bad input: refuse it before recording, naming it."""
    from .recorder.kernelfs.psi_trigger import parse_trigger
    from .recorder.sources.psi_triggers import has_cap_sys_resource

    privileged = has_cap_sys_resource(str(proc_root))
    for spec in options.get("psi_triggers") or []:
        try:
            parse_trigger(spec, privileged=privileged)
        except ValueError as e:
            raise UserError(f"--psi-trigger: {e}") from None


# -- reading -----------------------------------------------------------------
def open(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Tape]:  # noqa: A001 - mirrors a file API
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    return _open_paths([Path(p) for p in paths])


def _open_paths(paths: list, **store_options) -> list[Tape]:
    """Tape folders, or one fleet store (docs/fleet.md: hosts, start_wall_ns, end_wall_ns narrow it)."""
    from nodetape.store.reader import is_store, open_store

    if len(paths) == 1 and is_store(paths[0]):
        return open_store(paths[0], **store_options)
    return open_tapes(paths)


def _duck_error_line(e: Exception) -> str:
    msg = str(e).strip().splitlines()
    return msg[0] if msg else type(e).__name__


def sql(paths, query: str, params: dict | None = None) -> pa.Table:
    """Run SQL over the tapes' views; a bad statement is a QueryError with DuckDB's first line."""
    import duckdb

    from nodetape.store.views import connect_any  # a fleet store's single-scan views, or reader.connect

    con = connect_any(open(paths))
    try:
        rel = con.sql(query, params=params or None)
        if rel is None:  # a statement without a result (SET, CREATE ...)
            return pa.table({})
        return rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
    except duckdb.Error as e:
        raise QueryError(f"SQL error: {_duck_error_line(e)}") from None


def query(paths, name: str, params: dict[str, str] | None = None) -> pa.Table:
    from .queries import get

    q = get(name)
    bound = q.bind(params or {})
    return sql(paths, q.sql, bound)


def list_queries():
    from .queries import catalog

    return list(catalog().values())


# -- the node ----------------------------------------------------------------
def doctor(cgroup_root="/sys/fs/cgroup", proc_root="/proc", sys_root="/sys") -> list[dict]:
    """For every source: can it run here, and if not, why and what it needs."""
    from .recorder.registry import SOURCE_NAMES, load_source_class
    from .recorder.source import RecordContext

    # psi-triggers runs only when given a trigger: ask about a typical one
    ctx = RecordContext(cgroup_root=Path(cgroup_root), proc_root=Path(proc_root), sys_root=Path(sys_root),
                        options={"psi_triggers": ["memory some 150ms/2s"]})
    out = []
    for name in SOURCE_NAMES:
        row = {"source": name, "status": "available", "reason": None, "summary": None, "needs": None, "tables": []}
        try:
            cls = load_source_class(name)
            row.update(summary=cls.summary, needs=cls.needs, tables=list(cls.tables))
            src = cls()
            src.probe(ctx)
            if getattr(cls, "probe_by_starting", False):
                src.start(ctx)
                src.stop()
        except SourceUnavailable as e:
            row.update(status="unavailable", reason=e.reason)
        except Exception as e:
            row.update(status="unavailable", reason=f"probe failed: {type(e).__name__}: {e}")
        out.append(row)
    return out
