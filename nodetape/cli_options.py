"""What every command of the CLI shares: output options, value parsing, rendering, exit codes.

In the style of sqlite-utils' output options: each read command takes `FormatOpt`
and `OutputOpt` and ends with `emit(table, fmt, output)`, so every command has the
same formats. The values are checked here, one line naming the option on error.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from nodetape.core.errors import NodetapeError, UserError

FormatOpt = Annotated[str, typer.Option("--format", "-f", help="Output format: table, csv, json, jsonl or parquet.")]
OutputOpt = Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to FILE instead of stdout.")]


def duration(text: str | None, option: str) -> int | None:
    """A positive duration option (30s, 15m) in nanoseconds; None when not given."""
    from nodetape.core.durations import parse_duration_ns

    if text is None:
        return None
    try:
        ns = parse_duration_ns(text)
    except ValueError as e:
        raise UserError(f"{option}: {e}") from None
    if ns <= 0:
        raise UserError(f"{option}: must be positive, got {text!r}")
    return ns


def size(text: str | None, option: str) -> int | None:
    """A positive size option (500M, 2G) in bytes; None when not given."""
    from nodetape.core.sizes import parse_size

    if text is None:
        return None
    try:
        n = parse_size(text)
    except ValueError as e:
        raise UserError(f"{option}: {e}") from None
    if n <= 0:
        raise UserError(f"{option}: must be positive, got {text!r}")
    return n


def params(items: list[str] | None) -> dict[str, str]:
    """--param KEY=VALUE items as a dict."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--param {item!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


def emit(table, fmt: str, output: Path | None) -> None:
    """Write an Arrow table in the chosen format to --output or stdout."""
    from . import output as out

    if fmt not in out.FORMATS:
        raise UserError(f"--format: unknown format {fmt!r} (formats: {', '.join(out.FORMATS)})")
    try:
        out.write(table, fmt, output)
    except ValueError as e:
        raise UserError(str(e)) from None
    except OSError as e:
        raise UserError(f"{output}: cannot write: {e.strerror}") from None


# -- exit codes ----------------------------------------------------------------
def _fail(msg: str, code: int) -> int:
    sys.stderr.write(f"nodetape: error: {msg}\n")
    return code


def _usage_error(e: Exception) -> int | None:
    """Usage errors of the vendored Click (unknown option, missing argument, bad value)
    carry exit_code 2 and a one-line message."""
    if getattr(e, "exit_code", None) == 2 and hasattr(e, "format_message"):
        ctx = getattr(e, "ctx", None)
        where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        return _fail(e.format_message().splitlines()[0] + where, 2)
    return None


def run_command(command, argv: list[str]) -> int:
    """Run a Click command and map what it raises to DESIGN.md's exit codes."""
    debug = os.environ.get("NODETAPE_DEBUG") == "1"
    try:
        rv = command.main(args=argv, prog_name="nodetape", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except NodetapeError as e:
        if debug and not isinstance(e, UserError):
            raise
        return _fail(str(e).splitlines()[0] if str(e) else type(e).__name__, e.exit_code)
    except typer.Exit as e:
        return e.exit_code
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("nodetape: interrupted\n")
        return 130
    except BrokenPipeError:
        # `nodetape ... | head`: the reader left; not an error
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - replaces the closed stdout for good
        except OSError:
            pass
        return 0
    except Exception as e:
        code = _usage_error(e)
        if code is not None:
            return code
        if debug:
            raise
        return _fail(f"internal error: {type(e).__name__}: {e} (NODETAPE_DEBUG=1 shows the traceback)", 1)


# -- opening tapes or a fleet store: what every read command shares -------------
AllowDamagedOpt = Annotated[bool, typer.Option("--allow-damaged", help="Read what is sound of a damaged closed tape; each skipped part is named on stderr.")]
HostsOpt = Annotated[Optional[str], typer.Option("--hosts", help="Over a fleet store: only hosts matching this glob (e.g. 'node-*').")]
FromOpt = Annotated[Optional[str], typer.Option("--from", help="Over a fleet store: only parts reaching this ISO wall time or later.")]
ToOpt = Annotated[Optional[str], typer.Option("--to", help="Over a fleet store: only parts starting before this ISO wall time.")]
EngineOpt = Annotated[str, typer.Option("--engine", help="duckdb (default) or spark: the same named queries on Apache Spark.")]
SparkMasterOpt = Annotated[Optional[str], typer.Option("--spark-master", help="With --engine spark: the Spark master URL (default: local mode, or SPARK_MASTER).")]


def open_tapes(paths, *, allow_damaged: bool = False, hosts: str | None = None, from_: str | None = None,
               to: str | None = None, engine: str = "duckdb", spark_master: str | None = None):
    """The one place a command opens tapes or a store: one validation, one connection (nodetape.open)."""
    from nodetape import api

    return api.open(paths, allow_damaged=allow_damaged, hosts=hosts, from_=from_, to=to, engine=engine,
                    spark_master=spark_master)
