"""The nodetape command line: parse, call the API, render, map errors to exit codes.

Exit codes (DESIGN.md): 0 success; 2 bad usage or bad input, with one line naming
the file or option; 1 internal error. No traceback reaches a user unless
NODETAPE_DEBUG=1.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from nodetape.core.errors import NodetapeError, UserError

app = typer.Typer(
    name="nodetape",
    help=(
        "A flight recorder for Linux and Kubernetes nodes.\n\n"
        "Record cgroups, PSI, /proc and eBPF into a tape (Parquet + manifest), then "
        "query, report and replay it offline.\n\n"
        "Start with:  nodetape doctor   (what this node can record)\n\n"
        "then:        nodetape record /tmp/tape --duration 30s\n\n"
        "             nodetape query /tmp/tape throttle_timeline"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

FormatOpt = Annotated[str, typer.Option("--format", "-f", help="Output format: table, csv, json, jsonl or parquet.")]
OutputOpt = Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to FILE instead of stdout.")]
# fleet store options (docs/fleet.md), shared by query and sql
HostsOpt = Annotated[Optional[str], typer.Option("--hosts", help="Over a fleet store: only hosts matching this glob (e.g. 'node-*').")]
FromOpt = Annotated[Optional[str], typer.Option("--from", help="Over a fleet store: only parts reaching this ISO wall time or later.")]
ToOpt = Annotated[Optional[str], typer.Option("--to", help="Over a fleet store: only parts starting before this ISO wall time.")]
EngineOpt = Annotated[str, typer.Option("--engine", help="duckdb (default) or spark: the same named queries on Apache Spark.")]
SparkMasterOpt = Annotated[Optional[str], typer.Option("--spark-master", help="With --engine spark: the Spark master URL (default: local mode, or SPARK_MASTER).")]


def _duration(text: str | None, option: str) -> int | None:
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


def _emit(table, fmt: str, output: Path | None) -> None:
    from . import output as out

    if fmt not in out.FORMATS:
        raise UserError(f"--format: unknown format {fmt!r} (formats: {', '.join(out.FORMATS)})")
    try:
        out.write(table, fmt, output)
    except ValueError as e:
        raise UserError(str(e)) from None
    except OSError as e:
        raise UserError(f"{output}: cannot write: {e.strerror}") from None


def _params(items: list[str] | None) -> dict[str, str]:
    params = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--param {item!r}: expected KEY=VALUE")
        params[key.strip()] = value
    return params


# -- record ------------------------------------------------------------------
DEFAULT_CGROUP_ROOT = "/sys/fs/cgroup"
# what reads only the cgroup folder: the default sources on any other --cgroup-root
FOLDER_SOURCES = "cgroup,samples,psi"


@app.command()
def record(
    out: Annotated[Path, typer.Argument(help="New tape folder to write.")],
    duration: Annotated[Optional[str], typer.Option("--duration", "-d", help="Stop after this long (e.g. 30s, 15m). Default: until Ctrl-C or SIGTERM.")] = None,
    interval: Annotated[str, typer.Option("--interval", "-i", help="Sampling interval of cgroup stats, PSI and counters.")] = "1s",
    flush: Annotated[str, typer.Option("--flush", help="Write buffered rows to disk this often; a crash loses at most this much.")] = "2s",
    sources: Annotated[Optional[str], typer.Option("--sources", "-s", help="Comma list of sources (see 'nodetape doctor'). Default: every source this node can run.")] = None,
    cgroup_root: Annotated[Path, typer.Option("--cgroup-root", help="A folder laid out like /sys/fs/cgroup (v1, v2 or hybrid is detected), e.g. one that 'replay --into' re-enacts; then the default sources are the cgroup ones.")] = Path(DEFAULT_CGROUP_ROOT),
    proc_root: Annotated[Path, typer.Option("--proc-root", help="A folder laid out like /proc.")] = Path("/proc"),
    sys_root: Annotated[Path, typer.Option("--sys-root", help="A folder laid out like /sys (network interfaces).")] = Path("/sys"),
    psi_trigger: Annotated[Optional[list[str]], typer.Option("--psi-trigger", help="Register a kernel PSI trigger, e.g. \"memory some 150ms/2s\" (repeatable).")] = None,
    psi_trigger_cgroup: Annotated[Optional[list[str]], typer.Option("--psi-trigger-cgroup", help="Also register the triggers on cgroup2 cgroups whose path matches this glob, e.g. '/kubepods/*', including ones made while recording (repeatable).")] = None,
    cgroup: Annotated[Optional[list[str]], typer.Option("--cgroup", help="Glob of cgroup paths whose file opens are traced (default: Kubernetes pods).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress line and no summary.")] = False,
    retain: Annotated[Optional[str], typer.Option("--retain", help="Flight recorder: record until stopped, keeping only this last window (e.g. 15m); older parts are deleted.")] = None,
    max_size: Annotated[Optional[str], typer.Option("--max-size", help="Bound the tape's size (e.g. 500M, 2G); the oldest parts go first.")] = None,
    snapshot_on: Annotated[Optional[list[str]], typer.Option("--snapshot-on", help="Save a snapshot of the window when this happens: \"psi memory some > 20%\" (system PSI) or oom_kill (repeatable).")] = None,
    snapshot_dir: Annotated[Optional[Path], typer.Option("--snapshot-dir", help="Where snapshots go (default: a snapshots/ folder beside OUT).")] = None,
    snapshot_cooldown: Annotated[str, typer.Option("--snapshot-cooldown", help="At most one automatic snapshot this often.")] = "5m",
    push_store: Annotated[Optional[str], typer.Option("--push", help="Push each sealed part (and snapshot) to this fleet store (a folder or s3://...) in the background, retried while it is unreachable.")] = None,
) -> None:
    """Record this node into the tape folder OUT.

    SIGUSR1 (or 'nodetape snapshot OUT SNAP') saves the current window as its own
    tape while recording goes on. On a full disk the recorder drops raw event
    tables first, then stops with exit code 1; the tape stays readable.

    Examples:

      nodetape record /tmp/tape --duration 30s

      nodetape record /tmp/tape --sources cgroup,samples,psi --interval 500ms

      nodetape record /tmp/tape --psi-trigger "memory some 150ms/2s"

      nodetape record /var/lib/nodetape/tape --retain 15m --max-size 500M --snapshot-on oom_kill
    """
    from . import api
    from .progress import LiveProgress, print_summary

    options = {}
    if psi_trigger:
        options["psi_triggers"] = list(psi_trigger)
    if psi_trigger_cgroup:
        options["psi_trigger_cgroups"] = list(psi_trigger_cgroup)
    if cgroup:
        options["cgroup_globs"] = list(cgroup)
    max_bytes = None
    if max_size is not None:
        from nodetape.core.sizes import parse_size

        try:
            max_bytes = parse_size(max_size)
        except ValueError as e:
            raise UserError(f"--max-size: {e}") from None
        if max_bytes <= 0:
            raise UserError(f"--max-size: must be positive, got {max_size!r}")
    if sources is None and cgroup_root != Path(DEFAULT_CGROUP_ROOT):
        # eBPF, /proc and net sources watch the host, whatever the folder: they would mix
        # the host's rows into a recording of a re-enacted tree
        sources = FOLDER_SOURCES
        if not quiet and cgroup_root.is_dir():  # (a missing folder is the error to say instead)
            print(f"--cgroup-root {cgroup_root}: recording {sources} (the host's eBPF and /proc sources "
                  "only with --sources)", file=sys.stderr)
    live = None if quiet else LiveProgress(sys.stderr)
    manifest = api.record(
        out,
        duration_ns=_duration(duration, "--duration"),
        interval_ns=_duration(interval, "--interval"),
        flush_ns=_duration(flush, "--flush"),
        sources=sources,
        cgroup_root=cgroup_root,
        proc_root=proc_root,
        sys_root=sys_root,
        options=options,
        progress=live,
        retain_ns=_duration(retain, "--retain"),
        max_tape_bytes=max_bytes,
        snapshot_on=list(snapshot_on or []),
        snapshot_dir=snapshot_dir,
        snapshot_cooldown_ns=_duration(snapshot_cooldown, "--snapshot-cooldown"),
        **({"push_store": push_store} if push_store else {}),
    )
    if live:
        live.finish()
    if not quiet:
        print_summary(out, manifest, sys.stderr)


# -- snapshot ----------------------------------------------------------------
@app.command()
def snapshot(
    tape: Annotated[Path, typer.Argument(help="The tape folder (usually one being recorded with --retain).")],
    out: Annotated[Path, typer.Argument(help="New tape folder for the snapshot.")],
) -> None:
    """Save the current window of TAPE as its own tape OUT, while recording goes on.

    A running recorder of TAPE is asked (SIGUSR1) to flush and write the snapshot;
    with no recorder running, the parts on disk are copied (hard links).

    Example:  nodetape snapshot /var/lib/nodetape/tape /tmp/incident
    """
    from nodetape.tape.snapshot import snapshot_tape

    path, how = snapshot_tape(tape, out)
    by = "written by the running recorder" if how == "recorder" else "copied from the parts on disk"
    sys.stderr.write(f"snapshot of {tape} saved to {path} ({by})\n")


# -- info --------------------------------------------------------------------
@app.command()
def info(
    tapes: Annotated[list[Path], typer.Argument(help="One or more tape folders.")],
    json_: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Summarize a tape: host, time span, sources and their status, rows per table.

    Example:  nodetape info /tmp/tape
    """
    import json

    from . import api
    from .info import render, summary

    opened = api.open(tapes)
    if json_:
        print(json.dumps([summary(t) for t in opened], indent=2))
        return
    print("\n".join(render(t) for t in opened), end="")


# -- query -------------------------------------------------------------------
@app.command()
def query(
    args: Annotated[Optional[list[str]], typer.Argument(metavar="TAPE... NAME", help="Tape folder(s), then the query name.")] = None,
    param: Annotated[Optional[list[str]], typer.Option("--param", "-p", help="Query parameter KEY=VALUE (repeatable).")] = None,
    list_: Annotated[bool, typer.Option("--list", "-l", help="List the named queries and their parameters.")] = False,
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
    hosts: HostsOpt = None,
    from_: FromOpt = None,
    to: ToOpt = None,
    engine: EngineOpt = "duckdb",
    spark_master: SparkMasterOpt = None,
) -> None:
    """Run a named query (queries/*.sql) over one or more tapes.

    Examples:

      nodetape query --list

      nodetape query /tmp/tape pod_births

      nodetape query /tmp/tape throttle_timeline --param window=5s --format csv
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
        _emit(table, fmt, output)
        return
    if not args or len(args) < 2:
        raise UserError("query: give TAPE and NAME (or --list to see the queries)")
    if engine != "duckdb" or _is_fleet(args[:-1], hosts, from_, to):
        from . import fleet

        table = fleet.query(args[:-1], args[-1], _params(param), hosts=hosts, from_=from_, to=to,
                            engine=engine, spark_master=spark_master)
    else:
        table = api.query(args[:-1], args[-1], _params(param))
    _emit(table, fmt, output)


# -- sql ---------------------------------------------------------------------
@app.command()
def sql(
    args: Annotated[list[str], typer.Argument(metavar="TAPE... SQL", help="Tape folder(s), then one SQL statement.")],
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
    hosts: HostsOpt = None,
    from_: FromOpt = None,
    to: ToOpt = None,
    engine: EngineOpt = "duckdb",
    spark_master: SparkMasterOpt = None,
) -> None:
    """Run any DuckDB SQL over a tape: every table is a view (with `ts` and `host`).

    Examples:

      nodetape sql /tmp/tape "SELECT kind, count(*) FROM cgroup_events GROUP BY kind"

      nodetape sql node1 node2 "SELECT host, max(some_avg10) FROM psi_samples GROUP BY host"
    """
    from . import api

    if len(args) < 2:
        raise UserError("sql: give TAPE and a SQL statement")
    if not args[-1].strip():
        raise UserError("sql: the SQL statement is empty")
    if engine != "duckdb" or _is_fleet(args[:-1], hosts, from_, to):
        from . import fleet

        _emit(fleet.sql(args[:-1], args[-1], hosts=hosts, from_=from_, to=to, engine=engine,
                        spark_master=spark_master), fmt, output)
        return
    _emit(api.sql(args[:-1], args[-1]), fmt, output)


# -- push ---------------------------------------------------------------------
def _is_fleet(paths, hosts, from_, to) -> bool:
    """A fleet store given, or store options: the query goes through nodetape.fleet."""
    from nodetape.store.reader import is_store

    return hosts is not None or from_ is not None or to is not None or any(is_store(p) for p in paths)


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
    from . import fleet

    if len(args) < 2:
        raise UserError("push: give TAPE... and STORE")
    fleet.push(args[:-1], args[-1], host=host, quiet=quiet)


# -- replay ------------------------------------------------------------------
@app.command()
def replay(
    tapes: Annotated[list[Path], typer.Argument(help="Tape folder(s) to replay, merged in time order.")],
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
    hosts: HostsOpt = None,
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

    if _is_fleet(tapes, hosts, None, None):  # a fleet store: its tapes, opened (--from/--to act on rows as always)
        from . import fleet

        tapes = fleet.open_tapes_or_store(tapes, hosts)
    code = run_replay(
        tapes=tapes, speed=speed, max_speed=max_, from_=from_, to=to, tables=tables, cgroup=cgroup, pod=pod,
        fmt=fmt, output=output, into=into, out=out, check=check, prepare_only=prepare,
    )
    raise typer.Exit(code or 0)


# -- report ------------------------------------------------------------------
@app.command()
def report(
    tapes: Annotated[list[Path], typer.Argument(help="Tape folder(s).")],
    html: Annotated[Optional[Path], typer.Option("--html", help="Also write a self-contained HTML page with charts.")] = None,
) -> None:
    """Explain a tape: a birth certificate per container and a throttle chart per throttled cgroup.

    Examples:

      nodetape report /tmp/tape

      nodetape report /tmp/tape --html report.html
    """
    from .report import run_report

    run_report(tapes, html)


# -- doctor ------------------------------------------------------------------
@app.command()
def doctor(
    cgroup_root: Annotated[Path, typer.Option("--cgroup-root", help="A folder laid out like /sys/fs/cgroup.")] = Path("/sys/fs/cgroup"),
    proc_root: Annotated[Path, typer.Option("--proc-root", help="A folder laid out like /proc.")] = Path("/proc"),
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", help="table (default), csv, json or jsonl.")] = None,
) -> None:
    """Say what this node can record, and for each source that cannot run, why and how to fix it."""
    from . import api
    from .recorder.kernelfs.cgroupfs import detect_layout

    rows = api.doctor(cgroup_root, proc_root)
    if fmt:
        import pyarrow as pa

        _emit(pa.Table.from_pylist([{k: (", ".join(v) if isinstance(v, list) else v) for k, v in r.items()} for r in rows]), fmt, None)
        return
    layout = detect_layout(cgroup_root)
    uname = os.uname()
    print(f"node      {uname.nodename}  kernel {uname.release}  {uname.machine}")
    print(f"cgroups   {layout.mode}  ({', '.join(sorted(layout.hierarchies)) or 'none found'} under {cgroup_root})")
    print(f"user      uid {os.geteuid()}{' (root)' if os.geteuid() == 0 else ''}")
    print()
    ok = [r for r in rows if r["status"] == "available"]
    bad = [r for r in rows if r["status"] != "available"]
    width = max(len(r["source"]) for r in rows)
    print(f"can record ({len(ok)}):")
    for r in ok:
        print(f"  ✓ {r['source']:<{width}}  {r['summary'] or ''}")
    if bad:
        print(f"\ncannot record ({len(bad)}):")
        for r in bad:
            print(f"  ✗ {r['source']:<{width}}  {r['reason']}")
            if r["needs"]:
                print(f"    {'':<{width}}  needs: {r['needs']}")


# -- demo --------------------------------------------------------------------
@app.command()
def demo(
    out: Annotated[Optional[Path], typer.Option("--out", help="Tape folder to write (default: a new folder under /tmp).")] = None,
    seconds: Annotated[float, typer.Option("--seconds", help="How long the throttled container runs.")] = 6.0,
    no_bpf: Annotated[bool, typer.Option("--no-bpf", help="Record without eBPF sources.")] = False,
) -> None:
    """Record a real throttled container (runc, 0.2 cores) and print its birth cascade and throttle timeline."""
    from .demo import run_demo

    raise typer.Exit(run_demo(out=out, seconds=seconds, bpf=not no_bpf) or 0)


# -- schema ------------------------------------------------------------------
@app.command()
def schema(
    table: Annotated[Optional[str], typer.Argument(help="A table name; omit to list the tables.")] = None,
    fmt: FormatOpt = "table",
) -> None:
    """List the tape's tables, or show one table's columns with types, units and meanings.

    Examples:  nodetape schema     nodetape schema cgroup_samples
    """
    import pyarrow as pa

    from . import schemas
    from .schemas.docs import _type_name

    if table is None:
        _emit(pa.table({
            "table": [t.name for t in schemas.TABLES],
            "columns": [len(t.columns) for t in schemas.TABLES],
            "description": [t.doc for t in schemas.TABLES],
        }), fmt, None)
        return
    try:
        t = schemas.table(table)
    except KeyError as e:
        raise UserError(e.args[0]) from None
    _emit(pa.table({
        "column": [c.name for c in t.columns],
        "type": [_type_name(c.type) for c in t.columns],
        "unit": [c.unit for c in t.columns],
        "nullable": [c.nullable for c in t.columns],
        "meaning": [c.doc for c in t.columns],
    }), fmt, None)


# -- entry point ---------------------------------------------------------------
def _fail(msg: str, code: int) -> int:
    sys.stderr.write(f"nodetape: error: {msg}\n")
    return code


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (used by main and by tests)."""
    command = typer.main.get_command(app)
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        rv = command.main(args=argv, prog_name="nodetape", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except NodetapeError as e:
        if os.environ.get("NODETAPE_DEBUG") == "1" and not isinstance(e, UserError):
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
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except Exception as e:
        # usage errors of the vendored Click (unknown option, missing argument,
        # bad value) carry exit_code 2 and a one-line message
        if getattr(e, "exit_code", None) == 2 and hasattr(e, "format_message"):
            ctx = getattr(e, "ctx", None)
            where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            return _fail(e.format_message().splitlines()[0] + where, 2)
        if os.environ.get("NODETAPE_DEBUG") == "1":
            raise
        return _fail(f"internal error: {type(e).__name__}: {e} (NODETAPE_DEBUG=1 shows the traceback)", 1)


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
