"""The commands that read tapes or a fleet store: verify, info, query, sql, report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from nodetape import cli_options as opts
from nodetape.cli_app import app
from nodetape.cli_options import FormatOpt, OutputOpt
from nodetape.core.errors import UserError

# -- verify ------------------------------------------------------------------
@app.command()
def verify(
    tapes: Annotated[list[Path], typer.Argument(help="One or more tape folders.")],
) -> None:
    """Check every part of each TAPE: checksum, schema, NULLs, row counts, footer statistics.

    Prints a short report; exit 0 when every tape is sound, 2 naming each damaged
    part. Parts of tapes older than format 2 have no checksum: reported as
    unverified, not damaged.

    Example:  nodetape verify /tmp/tape
    """
    from nodetape.tape.verify import report, verify_tape

    results = [verify_tape(t) for t in tapes]
    sys.stdout.write(report(results))
    if not all(r.sound for r in results):
        raise typer.Exit(2)


# -- info --------------------------------------------------------------------
@app.command()
def info(
    tapes: Annotated[list[str], typer.Argument(help="One or more tape folders, or one fleet store.")],
    json_: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    allow_damaged: opts.AllowDamagedOpt = False,
    hosts: opts.HostsOpt = None,
    from_: opts.FromOpt = None,
    to: opts.ToOpt = None,
) -> None:
    """Summarize a tape: host, time span, sources and their status, rows per table.

    Example:  nodetape info /tmp/tape
    """
    import json

    from .info import render

    opened = opts.open_tapes(tapes, allow_damaged=allow_damaged, hosts=hosts, from_=from_, to=to)
    if json_:
        print(json.dumps(opened.info(), indent=2))
        return
    print("\n".join(render(t) for t in opened.part_tapes), end="")


# -- query -------------------------------------------------------------------
@app.command()
def query(
    args: Annotated[Optional[list[str]], typer.Argument(metavar="TAPE... NAME", help="Tape folder(s), then the query name.")] = None,
    param: Annotated[Optional[list[str]], typer.Option("--param", "-p", help="Query parameter KEY=VALUE (repeatable).")] = None,
    list_: Annotated[bool, typer.Option("--list", "-l", help="List the named queries and their parameters.")] = False,
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
    allow_damaged: opts.AllowDamagedOpt = False,
    hosts: opts.HostsOpt = None,
    from_: opts.FromOpt = None,
    to: opts.ToOpt = None,
    engine: opts.EngineOpt = "duckdb",
    spark_master: opts.SparkMasterOpt = None,
) -> None:
    """Run a named query (queries/*.sql) over one or more tapes.

    Examples:

      nodetape query --list

      nodetape query /tmp/tape pod_births

      nodetape query /tmp/tape throttle_timeline --param window=5s --format csv

      nodetape query /mnt/fleet pod_births --hosts 'node-*' --from 2026-12-06T10:02:00Z --engine spark
    """
    from . import api

    if list_:
        import pyarrow as pa

        qs = api.list_queries()
        table = pa.table({
            "name": [q.name for q in qs],
            "parameters": [", ".join(f"{p.name}={p.default}" for p in q.params.values()) for q in qs],
            "description": [q.description for q in qs],
        })
        opts.emit(table, fmt, output)
        return
    if not args or len(args) < 2:
        raise UserError("query: give TAPE and NAME (or --list to see the queries)")
    db = opts.open_tapes(args[:-1], allow_damaged=allow_damaged, hosts=hosts, from_=from_, to=to, engine=engine,
                         spark_master=spark_master)
    opts.emit(db.query(args[-1], **opts.params(param)), fmt, output)


# -- sql ---------------------------------------------------------------------
@app.command()
def sql(
    args: Annotated[list[str], typer.Argument(metavar="TAPE... SQL", help="Tape folder(s), then one SQL statement.")],
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
    allow_damaged: opts.AllowDamagedOpt = False,
    hosts: opts.HostsOpt = None,
    from_: opts.FromOpt = None,
    to: opts.ToOpt = None,
    engine: opts.EngineOpt = "duckdb",
    spark_master: opts.SparkMasterOpt = None,
) -> None:
    """Run any DuckDB SQL over a tape: every table is a view (with `ts` and `host`).

    Examples:

      nodetape sql /tmp/tape "SELECT kind, count(*) FROM cgroup_events GROUP BY kind"

      nodetape sql node1 node2 "SELECT host, max(some_avg10) FROM psi_samples GROUP BY host"
    """
    if len(args) < 2:
        raise UserError("sql: give TAPE and a SQL statement")
    if not args[-1].strip():
        raise UserError("sql: the SQL statement is empty")
    db = opts.open_tapes(args[:-1], allow_damaged=allow_damaged, hosts=hosts, from_=from_, to=to, engine=engine,
                         spark_master=spark_master)
    opts.emit(db.sql(args[-1]), fmt, output)


# -- report ------------------------------------------------------------------
@app.command()
def report(
    tapes: Annotated[list[str], typer.Argument(help="Tape folder(s), or one fleet store.")],
    html: Annotated[Optional[Path], typer.Option("--html", help="Also write a self-contained HTML page with charts.")] = None,
    allow_damaged: opts.AllowDamagedOpt = False,
    hosts: opts.HostsOpt = None,
    from_: opts.FromOpt = None,
    to: opts.ToOpt = None,
) -> None:
    """Explain a tape: a birth certificate per container and a throttle chart per throttled cgroup.

    Examples:

      nodetape report /tmp/tape

      nodetape report /tmp/tape --html report.html
    """
    from .report import render_text

    data = opts.open_tapes(tapes, allow_damaged=allow_damaged, hosts=hosts, from_=from_, to=to).report()
    sys.stdout.write(render_text(data))
    if html:
        from .report_html import write_html

        write_html(data, html)
        sys.stdout.write(f"\nwrote {html}\n")
