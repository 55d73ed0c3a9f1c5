"""The commands about this node and the product: doctor, demo, schema."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from nodetape import cli_options as opts
from nodetape.cli_app import app
from nodetape.cli_options import FormatOpt
from nodetape.core.errors import UserError

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
