"""The nodetape command line: parse, call the API, render, map errors to exit codes.

Exit codes (DESIGN.md): 0 success; 2 bad usage or bad input, with one line naming
the file or option; 1 internal error. No traceback reaches a user unless
NODETAPE_DEBUG=1.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from nodetape import cli_options as opts
from nodetape.cli_options import FormatOpt, OutputOpt
from nodetape.core.errors import UserError

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
    runtime_state: Annotated[Optional[str], typer.Option("--runtime-state", help="Comma list of container runtime state folders the runtime source reads OCI specs from (default: /run/containerd,/run/containers/storage).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress line and no summary.")] = False,
    retain: Annotated[Optional[str], typer.Option("--retain", help="Flight recorder: record until stopped, keeping only this last window (e.g. 15m); older parts are deleted.")] = None,
    max_size: Annotated[Optional[str], typer.Option("--max-size", help="Bound the tape's size (e.g. 500M, 2G); the oldest parts go first.")] = None,
    snapshot_on: Annotated[Optional[list[str]], typer.Option("--snapshot-on", help="Save a snapshot of the window when this happens: \"psi memory some > 20%\" (system PSI) or oom_kill (repeatable).")] = None,
    snapshot_dir: Annotated[Optional[Path], typer.Option("--snapshot-dir", help="Where snapshots go (default: a snapshots/ folder beside OUT).")] = None,
    snapshot_cooldown: Annotated[str, typer.Option("--snapshot-cooldown", help="At most one automatic snapshot this often.")] = "5m",
    metrics_port: Annotated[Optional[int], typer.Option("--metrics-port", help="Serve the recorder's health as Prometheus/OpenMetrics on this port (/metrics), e.g. 9464.")] = None,
    metrics_addr: Annotated[str, typer.Option("--metrics-addr", help="Address for --metrics-port; 0.0.0.0 lets a Prometheus off this host scrape it.")] = "127.0.0.1",
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

    options = {key: list(v) for key, v in (("psi_triggers", psi_trigger), ("psi_trigger_cgroups", psi_trigger_cgroup),
                                            ("cgroup_globs", cgroup)) if v}
    if runtime_state is not None:
        dirs = [d.strip() for d in runtime_state.split(",") if d.strip()]
        if not dirs:
            raise UserError("--runtime-state: give one or more folders, comma separated")
        options["runtime_state"] = dirs
    max_bytes = opts.size(max_size, "--max-size")
    sources = _default_sources(sources, cgroup_root, quiet)
    live = None if quiet else LiveProgress(sys.stderr)
    progress, metrics = live, None
    if metrics_port is not None:
        from .metrics import chain, serve

        metrics = serve(metrics_port, metrics_addr)
        progress = chain(live, metrics)
    rec = api.recorder(
        out, duration_ns=opts.duration(duration, "--duration"), interval_ns=opts.duration(interval, "--interval"),
        flush_ns=opts.duration(flush, "--flush"), sources=sources, cgroup_root=cgroup_root, proc_root=proc_root,
        sys_root=sys_root, options=options, progress=progress, retain_ns=opts.duration(retain, "--retain"),
        max_tape_bytes=max_bytes, snapshot_on=list(snapshot_on or []), snapshot_dir=snapshot_dir,
        snapshot_cooldown_ns=opts.duration(snapshot_cooldown, "--snapshot-cooldown"),
    )
    manifest = _run_with_signals(rec)
    if live:
        live.finish()
    if metrics is not None:
        metrics.finish()
    if not quiet:
        print_summary(out, manifest, sys.stderr)


def _run_with_signals(rec) -> dict:
    """SIGINT/SIGTERM stop the recorder cleanly (flush, close); SIGUSR1 (`nodetape snapshot`) saves a snapshot."""
    import signal

    handlers = {signal.SIGINT: rec.request_stop, signal.SIGTERM: rec.request_stop,
                signal.SIGUSR1: rec.request_snapshot}
    old = {s: signal.signal(s, h) for s, h in handlers.items()}
    try:
        return rec.run()
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _default_sources(sources: str | None, cgroup_root: Path, quiet: bool) -> str | None:
    """On another --cgroup-root, only the sources that read the cgroup folder, unless --sources says."""
    if sources is not None or cgroup_root == Path(DEFAULT_CGROUP_ROOT):
        return sources
    # eBPF, /proc and net sources watch the host, whatever the folder: they would mix
    # the host's rows into a recording of a re-enacted tree
    if not quiet and cgroup_root.is_dir():  # (a missing folder is the error to say instead)
        print(f"--cgroup-root {cgroup_root}: recording {FOLDER_SOURCES} (the host's eBPF and /proc sources "
              "only with --sources)", file=sys.stderr)
    return FOLDER_SOURCES


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
    tapes: Annotated[list[Path], typer.Argument(help="One or more tape folders.")],
    json_: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Summarize a tape: host, time span, sources and their status, rows per table.

    Example:  nodetape info /tmp/tape
    """
    import json

    from .info import render

    opened = _open(tapes)
    if json_:
        print(json.dumps(opened.info(), indent=2))
        return
    print("\n".join(render(t) for t in opened.tapes), end="")


# -- query -------------------------------------------------------------------
@app.command()
def query(
    args: Annotated[Optional[list[str]], typer.Argument(metavar="TAPE... NAME", help="Tape folder(s), then the query name.")] = None,
    param: Annotated[Optional[list[str]], typer.Option("--param", "-p", help="Query parameter KEY=VALUE (repeatable).")] = None,
    list_: Annotated[bool, typer.Option("--list", "-l", help="List the named queries and their parameters.")] = False,
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
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
        opts.emit(table, fmt, output)
        return
    if not args or len(args) < 2:
        raise UserError("query: give TAPE and NAME (or --list to see the queries)")
    opts.emit(_open(args[:-1]).query(args[-1], **opts.params(param)), fmt, output)


# -- sql ---------------------------------------------------------------------
@app.command()
def sql(
    args: Annotated[list[str], typer.Argument(metavar="TAPE... SQL", help="Tape folder(s), then one SQL statement.")],
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
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
    opts.emit(_open(args[:-1]).sql(args[-1]), fmt, output)


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
    allow_cgroupfs: Annotated[bool, typer.Option("--allow-cgroupfs", help="With --into: allow a real cgroup filesystem as the target (only the cgroups the tape names are touched).")] = False,
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

    code = run_replay(
        tapes=tapes, speed=speed, max_speed=max_, from_=from_, to=to, tables=tables, cgroup=cgroup, pod=pod,
        fmt=fmt, output=output, into=into, out=out, check=check, prepare_only=prepare, allow_cgroupfs=allow_cgroupfs,
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
    from .report import render_text

    data = _open(tapes).report()
    sys.stdout.write(render_text(data))
    if html:
        from .report_html import write_html

        write_html(data, html)
        sys.stdout.write(f"\nwrote {html}\n")


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


# -- doctor ------------------------------------------------------------------
@app.command()
def doctor(
    cgroup_root: Annotated[Path, typer.Option("--cgroup-root", help="A folder laid out like /sys/fs/cgroup.")] = Path("/sys/fs/cgroup"),
    proc_root: Annotated[Path, typer.Option("--proc-root", help="A folder laid out like /proc.")] = Path("/proc"),
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", help="table (default), csv, json or jsonl.")] = None,
) -> None:
    """Say what this node can record, and for each source that cannot run, why and how to fix it."""
    from . import api
    from .doctor import render

    rows = api.doctor(cgroup_root, proc_root)
    if fmt:
        import pyarrow as pa

        opts.emit(pa.Table.from_pylist([{k: (", ".join(v) if isinstance(v, list) else v) for k, v in r.items()} for r in rows]), fmt, None)
        return
    sys.stdout.write(render(rows, cgroup_root))


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
        opts.emit(pa.table({
            "table": [t.name for t in schemas.TABLES],
            "columns": [len(t.columns) for t in schemas.TABLES],
            "description": [t.doc for t in schemas.TABLES],
        }), fmt, None)
        return
    try:
        t = schemas.table(table)
    except KeyError as e:
        raise UserError(e.args[0]) from None
    opts.emit(pa.table({
        "column": [c.name for c in t.columns],
        "type": [_type_name(c.type) for c in t.columns],
        "unit": [c.unit for c in t.columns],
        "nullable": [c.nullable for c in t.columns],
        "meaning": [c.doc for c in t.columns],
    }), fmt, None)


# -- entry point ---------------------------------------------------------------
def _open(tapes):
    """The one place a command opens tapes: one validation, one DuckDB connection."""
    from . import api

    return api.open(tapes)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (used by main and by tests)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return opts.run_command(typer.main.get_command(app), argv)


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
