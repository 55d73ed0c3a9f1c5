"""The Typer application every command module registers on (cli.py imports them in help order)."""

from __future__ import annotations

import typer

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
