"""The commands that move a tape elsewhere: replay (a stream, a slice, a re-enacted tree), export, push."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from nodetape import cli_options as opts
from nodetape.cli_app import app
from nodetape.cli_options import OutputOpt
from nodetape.core.errors import UserError

# -- replay ------------------------------------------------------------------
@app.command()
def replay(
    tapes: Annotated[list[str], typer.Argument(help="Tape folder(s) to replay, merged in time order, or one fleet store.")],
    speed: Annotated[Optional[float], typer.Option("--speed", help="Pace: 1 is the recorded pace, 10 ten times faster.")] = None,
    max_: Annotated[bool, typer.Option("--max", help="As fast as possible (the default when stdout is not a terminal).")] = False,
    from_: Annotated[Optional[str], typer.Option("--from", help="Start at this time: ISO wall time, boottime ns, or +5s from the tape's start.")] = None,
    to: Annotated[Optional[str], typer.Option("--to", help="Stop at this time (same forms as --from).")] = None,
    tables: Annotated[Optional[str], typer.Option("--tables", help="Comma list of tables to replay (default: all).")] = None,
    cgroup: Annotated[Optional[str], typer.Option("--cgroup", help="Only rows of cgroups whose path matches this glob.")] = None,
    pod: Annotated[Optional[str], typer.Option("--pod", help="Only rows of this pod UID.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="Event stream format (jsonl).")] = "jsonl",
    output: OutputOpt = None,
    into: Annotated[Optional[Path], typer.Option("--into", help="Re-enact the cgroup tree and its files into this folder.")] = None,
    prepare: Annotated[bool, typer.Option("--prepare", help="With --into: only make the empty hierarchy layout, for a recorder to start on, then exit.")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write the filtered slice as a new tape.")] = None,
    check: Annotated[Optional[Path], typer.Option("--check", help="Compare the jsonl stream with this file: exit 0 on a match, 1 at the first difference.")] = None,
    allow_cgroupfs: Annotated[bool, typer.Option("--allow-cgroupfs", help="With --into: allow a real cgroup filesystem as the target (only the cgroups the tape names are touched).")] = False,
    hosts: opts.HostsOpt = None,
    allow_damaged: opts.AllowDamagedOpt = False,
) -> None:
    """Stream a tape's events in time order, deterministically.

    Examples:

      nodetape replay /tmp/tape --max > events.jsonl

      nodetape replay /tmp/tape --from +5s --to +10s --tables cgroup_events

      nodetape replay /tmp/tape --check expected.jsonl

    Re-enacting an incident for a live recorder (three commands):

      nodetape replay /tmp/tape --into /tmp/cgroupfs --prepare

      nodetape record /tmp/again --cgroup-root /tmp/cgroupfs --duration 30s &

      nodetape replay /tmp/tape --into /tmp/cgroupfs --speed 1
    """
    from .replay.command import run_replay

    # opened once, here: tape folders or a fleet store (--from/--to then act on rows, as on any tape)
    opened = opts.open_tapes(tapes, allow_damaged=allow_damaged, hosts=hosts).part_tapes
    code = run_replay(
        tapes=opened, speed=speed, max_speed=max_, from_=from_, to=to, tables=tables, cgroup=cgroup, pod=pod,
        fmt=fmt, output=output, into=into, out=out, check=check, prepare_only=prepare, allow_cgroupfs=allow_cgroupfs,
    )
    raise typer.Exit(code or 0)


# -- export ------------------------------------------------------------------
@app.command()
def export(
    tape: Annotated[Path, typer.Argument(help="The tape folder.")],
    perfetto: Annotated[Optional[Path], typer.Option("--perfetto", help="Write a Perfetto trace (open it at ui.perfetto.dev).")] = None,
) -> None:
    """Export a tape for other tools: a Perfetto trace of births, throttling, memory, PSI and lineage.

    Example:  nodetape export /tmp/tape --perfetto /tmp/tape.pftrace
    """
    from .export.perfetto import export_perfetto

    if perfetto is None:
        raise UserError("export: give --perfetto OUT.pftrace (the format to write)")
    s = export_perfetto(tape, perfetto)
    sys.stderr.write(f"wrote {perfetto}: {s['tracks']:,} tracks, {s['slices'] + s['instants']:,} slices, "
                     f"{s['counter_values']:,} counter values, {s['bytes'] / 1024:.0f} KiB\n")


# -- push --------------------------------------------------------------------
@app.command()
def push(
    args: Annotated[list[str], typer.Argument(metavar="TAPE... STORE", help="Tape folder(s), then the store: a folder or s3://bucket/prefix.")],
    host: Annotated[Optional[str], typer.Option("--host", help="Store the tape under this host label instead of its recorded hostname.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress and no summary.")] = False,
) -> None:
    """Push tapes' sealed parts and manifests into a fleet store (atomic, idempotent, resumable).

    Examples:

      nodetape push /var/lib/nodetape/tape /mnt/fleet

      nodetape push /tmp/tape s3://incidents/fleet
    """
    from . import api

    if len(args) < 2:
        raise UserError("push: give TAPE... and STORE")
    api.push(args[:-1], args[-1], host=host, quiet=quiet)


# -- compact -----------------------------------------------------------------
@app.command()
def compact(
    store: Annotated[str, typer.Argument(metavar="STORE", help="A directory fleet store (object stores are refused).")],
    table: Annotated[Optional[str], typer.Option("--table", help="Compact this table only (default: every table).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress and no summary.")] = False,
) -> None:
    """Merge each table's parts of a date, across all hosts, into one file per run (atomic; docs/fleet.md).

    Fleet queries then open a few files instead of one per host. Safe to run while pushes go on
    and to kill: run it again, e.g. hourly or once a date is over (a cron job or a CronJob).

    Example:

      nodetape compact /mnt/fleet
    """
    from .store.compact import run

    run(store, table, quiet=quiet)
