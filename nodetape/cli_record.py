"""`nodetape record` and `nodetape snapshot`: the commands that write a tape on this node."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from nodetape import cli_options as opts
from nodetape.cli_app import app
from nodetape.core.errors import UserError

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
    push_store: Annotated[Optional[str], typer.Option("--push", help="Push each sealed part (and snapshot) to this fleet store (a folder or s3://...) in the background, retried while it is unreachable.")] = None,
    host: Annotated[Optional[str], typer.Option("--host", help="Label the tape (its rows and a store's partitions) with this host name instead of the kernel's; a DaemonSet passes the node's name.")] = None,
    no_compact: Annotated[bool, typer.Option("--no-compact", help="Keep every flushed part as written (no background merging into larger time-sorted parts).")] = False,
) -> None:
    """Record this node into the tape folder OUT.

    SIGUSR1 (or 'nodetape snapshot OUT SNAP') saves the current window as its own
    tape while recording goes on. On a full disk the recorder drops raw event
    tables first, then stops with exit code 1; the tape stays readable.

    Examples:

      nodetape record /tmp/tape --duration 30s

      nodetape record /tmp/tape --psi-trigger "memory some 150ms/2s"

      nodetape record /var/lib/nodetape/tape --retain 15m --max-size 500M --snapshot-on oom_kill

      nodetape record /var/lib/nodetape/tape --retain 15m --push /mnt/fleet --metrics-port 9464
    """
    from nodetape.recorder import memory

    memory.configure()  # recorder/memory.py; before the API loads pyarrow (its pool is fixed then)
    from . import api
    from .progress import LiveProgress

    live = None if quiet else LiveProgress(sys.stderr)
    progress, metrics = _with_metrics(live, metrics_port, metrics_addr)
    rec = api.recorder(
        out, duration_ns=opts.duration(duration, "--duration"), interval_ns=opts.duration(interval, "--interval"),
        flush_ns=opts.duration(flush, "--flush"), sources=_default_sources(sources, cgroup_root, quiet),
        cgroup_root=cgroup_root, proc_root=proc_root, sys_root=sys_root,
        options=_source_options(psi_trigger, psi_trigger_cgroup, cgroup, runtime_state), progress=progress,
        retain_ns=opts.duration(retain, "--retain"), max_tape_bytes=opts.size(max_size, "--max-size"),
        snapshot_on=list(snapshot_on or []), snapshot_dir=snapshot_dir,
        snapshot_cooldown_ns=opts.duration(snapshot_cooldown, "--snapshot-cooldown"), push_store=push_store,
        host_label=host, compact=not no_compact)
    _run(rec, out, live, metrics)


def _source_options(psi_trigger, psi_trigger_cgroup, cgroup, runtime_state) -> dict:
    options = {key: list(v) for key, v in (("psi_triggers", psi_trigger), ("psi_trigger_cgroups", psi_trigger_cgroup),
                                            ("cgroup_globs", cgroup)) if v}
    if runtime_state is not None:
        dirs = [d.strip() for d in runtime_state.split(",") if d.strip()]
        if not dirs:
            raise UserError("--runtime-state: give one or more folders, comma separated")
        options["runtime_state"] = dirs
    return options


def _with_metrics(live, port: int | None, addr: str):
    """The progress callback, chained with the Prometheus exporter when --metrics-port asks for one."""
    if port is None:
        return live, None
    from .metrics import chain, serve

    metrics = serve(port, addr)
    return chain(live, metrics), metrics


def _run(rec, out: Path, live, metrics) -> None:
    """Record until stopped, then close the progress line and the exporter, and say what was written."""
    from .progress import print_summary

    manifest = _run_with_signals(rec)
    for done in (live, metrics):
        if done is not None:
            done.finish()
    if live is not None:  # (not --quiet)
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
