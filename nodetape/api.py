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
from nodetape.tape.reader import Tape, open_tapes


# -- recording ---------------------------------------------------------------
def record(out: str | os.PathLike, **options) -> dict:
    """Record into the tape folder `out` until the duration ends; returns the manifest.

    Takes the keyword options of recorder(). It installs no signal handler, so it runs
    on any thread; to stop it from elsewhere, build the Recorder with recorder() and
    call its request_stop() (the CLI does so on SIGINT/SIGTERM, and calls
    request_snapshot() on SIGUSR1, which `nodetape snapshot` sends).
    """
    return recorder(out, **options).run()


def recorder(
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
    host_label: str | None = None,
    compact: bool = True,
):
    """A Recorder into the tape folder `out`, checked and ready to run(); bad options are UserError.

    run() records until `duration_ns` ends or request_stop(), and returns the manifest.
    Flight-recorder mode (issue 9): `retain_ns` keeps only the last window of parts,
    `max_tape_bytes` bounds the tape's size; `snapshot_on` lists triggers
    ("psi memory some > 20%", "oom_kill") that save the window into `snapshot_dir`.
    """
    from .recorder.loop import Recorder, RecordOptions
    from .recorder.source import RecordContext

    for label, p in (("--cgroup-root", cgroup_root), ("--proc-root", proc_root)):
        if not Path(p).is_dir():
            raise UserError(f"{label} {p}: no such folder")
    _check_psi_triggers(options or {}, proc_root)
    ctx = RecordContext(cgroup_root=Path(cgroup_root), proc_root=Path(proc_root), sys_root=Path(sys_root),
                        interval_ns=interval_ns, options=dict(options or {}))
    opts = RecordOptions(out=Path(out), sources=_source_names(sources), ctx=ctx, duration_ns=duration_ns,
                         flush_interval_ns=flush_ns, progress=progress, retain_ns=retain_ns,
                         max_tape_bytes=max_tape_bytes, snapshot_on=_triggers(snapshot_on),
                         snapshot_dir=Path(snapshot_dir) if snapshot_dir else None)
    if snapshot_cooldown_ns:
        opts.snapshot_cooldown_ns = snapshot_cooldown_ns
    opts.push_store, opts.host_label = _push_options(push_store, host_label)
    opts.compact = compact
    return Recorder(opts)


def _source_names(sources: str | Sequence[str] | None) -> list[str]:
    from .recorder.registry import parse_source_list

    if isinstance(sources, str) or sources is None:
        try:
            return parse_source_list(sources)
        except ValueError as e:
            raise UserError(f"--sources: {e}") from None
    return list(sources)


def _triggers(snapshot_on: Sequence[str]) -> list:
    from .recorder.triggers import parse_trigger

    try:
        return [parse_trigger(s) for s in snapshot_on]
    except ValueError as e:
        raise UserError(f"--snapshot-on: {e}") from None


def _push_options(push_store: str | None, host_label: str | None) -> tuple[str | None, str | None]:
    """--push: a store location checked now (docs/fleet.md); --host: a plain name (it names partitions)."""
    if push_store:
        from .store.storefs import check_location

        push_store = check_location(push_store)
    if host_label is not None:
        from .store.layout import check_name

        try:
            host_label = check_name("host", host_label)
        except UserError as e:
            raise UserError(f"--host: {e}") from None
    return push_store or None, host_label


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
ENGINES = ("duckdb", "spark")


def _paths(tapes) -> list[Path]:
    """Flatten `open("a", "b")`, `open(["a", "b"])` and `open(Path("a"))` into one list."""
    out: list[Path] = []
    for t in tapes:
        if isinstance(t, (str, os.PathLike)):
            out.append(t if "://" in str(t) else Path(t))  # an object store's URL stays a string
        else:
            out.extend(p if "://" in str(p) else Path(p) for p in t)
    return out


def _duck_error_line(e: Exception) -> str:
    msg = str(e).strip().splitlines()
    return msg[0] if msg else type(e).__name__


class Tapes:
    """One or several tapes opened once, with one DuckDB connection over their views.

    In the style of sqlite-utils' Database: `nodetape.open(path, ...)` returns one;
    `.sql()`, `.query()`, `.report()` share its connection, `.events()` its opened
    tapes. Results are Arrow tables (`.to_pandas()`, `polars.from_arrow()` from there).
    Use it from one thread at a time, as a DuckDB connection (open one per thread).
    """

    def __init__(self, paths: Sequence[str | os.PathLike], *, allow_damaged: bool = False,
                 hosts: str | None = None, from_: str | None = None, to: str | None = None,
                 engine: str = "duckdb", spark_master: str | None = None):
        if engine not in ENGINES:
            raise UserError(f"--engine: unknown engine {engine!r} (engines: {', '.join(ENGINES)})")
        self.paths = [Path(p) if "://" not in str(p) else p for p in paths]
        self.allow_damaged = allow_damaged
        self.engine, self.spark_master = engine, spark_master
        self.tapes: list[Tape] = self._open(hosts, from_, to)
        self._con = None

    def _open(self, hosts, from_, to) -> list[Tape]:
        """The one place tapes, or one fleet store, are opened and validated (docs/fleet.md)."""
        from nodetape.store.reader import is_store, open_store, parse_wall

        stores = [p for p in self.paths if is_store(p)]
        if stores:
            if len(self.paths) > 1:
                raise UserError(f"{stores[0]}: give one fleet store alone (not with other tapes or stores)")
            start, end = parse_wall(from_, "--from"), parse_wall(to, "--to")
            if start is not None and end is not None and end <= start:
                raise UserError("--to: must be after --from")
            return open_store(stores[0], hosts, start, end)
        if hosts is not None or from_ is not None or to is not None:
            opt = "--hosts" if hosts is not None else "--from" if from_ is not None else "--to"
            raise UserError(f"{opt}: narrows a fleet store, and {self.paths[0]} is a tape folder")
        # with allow_damaged, each skipped part is named on stderr (and kept in Tape.skipped)
        return open_tapes(self.paths, allow_damaged=self.allow_damaged)

    @property
    def con(self):
        """The DuckDB connection: one view per table over all tapes (a store's single-scan views), the
        query macros registered."""
        if self._con is None:
            from nodetape.queries.macros import register
            from nodetape.store.views import connect_any

            self._con = register(connect_any(self.tapes))
        return self._con

    def sql(self, text: str, params: dict | Sequence | None = None) -> pa.Table:
        """Run SQL over the tapes' views; a bad statement is a QueryError with the engine's first line."""
        if self.engine == "spark":
            from nodetape import spark

            return spark.run_sql(self.tapes, text, params or {}, master=self.spark_master)
        import duckdb

        try:
            rel = self.con.sql(text, params=params or None)
            if rel is None:  # a statement without a result (SET, CREATE ...)
                return pa.table({})
            return rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
        except duckdb.Error as e:
            raise QueryError(f"SQL error: {_duck_error_line(e)}") from None

    def query(self, name: str, **params) -> pa.Table:
        """Run a named query; parameters as text, as on the command line (window="5s", top="3")."""
        from nodetape.queries import get

        q = get(name)
        return self.sql(q.sql, q.bind({k: str(v) for k, v in params.items()}))

    @property
    def part_tapes(self) -> list[Tape]:
        """The tapes with every row in per-tape parts (a compacted store's rows written back to
        temporary parts, store/views.py), for what walks parts: replay, info."""
        as_parts = getattr(self.tapes, "as_part_tapes", None)
        return as_parts() if as_parts else self.tapes

    def events(self, from_=None, to=None, tables=None, cgroup: str | None = None, pod: str | None = None):
        """The replay stream over these tapes: Events in time order (see nodetape.replay.stream)."""
        from nodetape.replay.stream import Replay

        return Replay(self.part_tapes).events(from_, to, tables, cgroup, pod)

    def report(self):
        """What `nodetape report` shows, as data (nodetape.report.ReportData)."""
        from .report import collect

        return collect(self)

    def info(self) -> list[dict]:
        """`nodetape info --json`: one summary per tape."""
        from .info import summary

        return [summary(t) for t in self.part_tapes]

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self) -> Tapes:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Tapes {', '.join(map(str, self.paths))}>"


def open(*tapes: str | os.PathLike | Sequence[str | os.PathLike], allow_damaged: bool = False,  # noqa: A001
         hosts: str | None = None, from_: str | None = None, to: str | None = None,
         engine: str = "duckdb", spark_master: str | None = None) -> Tapes:
    """Open tapes once: `nodetape.open("/tmp/tape")`, `nodetape.open("node1", "node2")`, a list, or one
    fleet store (a folder holding `_tapes/`, or s3://...) narrowed by `hosts` (a glob) and `from_`/`to`
    (ISO wall times). `engine="spark"` runs sql() and query() on Apache Spark instead of DuckDB.

    A damaged closed tape raises TapeError naming the part unless `allow_damaged`.
    """
    return Tapes(_paths(tapes), allow_damaged=allow_damaged, hosts=hosts, from_=from_, to=to, engine=engine,
                 spark_master=spark_master)


def push(tapes: Sequence[str | os.PathLike], store: str, *, host: str | None = None, quiet: bool = False):
    """Push tapes' sealed parts and manifests into a fleet store; UserError (exit 2) when a part conflicted."""
    import sys

    from nodetape.store.push import push as do_push

    stats = do_push([Path(t) for t in tapes], store, host=host, stream=sys.stderr, quiet=quiet)
    if stats.conflicts:
        more = f" (and {len(stats.conflicts) - 1} more)" if len(stats.conflicts) > 1 else ""
        raise UserError(stats.conflicts[0] + more)
    return stats


def list_queries():
    from nodetape.queries import catalog

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
