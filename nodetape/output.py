"""One output module for every read command: table, csv, json, jsonl, parquet.

Input is a pyarrow Table; timestamps print as ISO 8601 (UTC), floats with up to
6 significant decimals in text formats, so output is stable and easy to pipe.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import IO

import pyarrow as pa

from nodetape.replay.sinks.jsonl import plain as _plain
from nodetape.replay.sinks.jsonl import write_table

FORMATS = ("table", "csv", "json", "jsonl", "parquet")


def _text(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}" if abs(v) >= 1e6 or (v != 0 and abs(v) < 1e-3) else f"{round(v, 6):g}"
    v = _plain(v)
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def rows(table: pa.Table):
    names = table.column_names
    for batch in table.to_batches():
        cols = [c.to_pylist() for c in batch.columns]
        for i in range(batch.num_rows):
            yield {n: cols[j][i] for j, n in enumerate(names)}


def write_jsonl(table: pa.Table, out: IO[str]) -> None:
    """One object per row, compact, the bytes of replay's stream (one encoder: replay/sinks/jsonl.py)."""
    write_table(table, out)


def write_json(table: pa.Table, out: IO[str]) -> None:
    out.write("[")
    for i, r in enumerate(rows(table)):
        out.write(("," if i else "") + "\n  " + json.dumps({k: _plain(v) for k, v in r.items()}, ensure_ascii=False))
    out.write("\n]\n" if table.num_rows else "]\n")


def write_csv(table: pa.Table, out: IO[str]) -> None:
    w = csv.writer(out, lineterminator="\n")
    w.writerow(table.column_names)
    for r in rows(table):
        w.writerow([_text(v) for v in r.values()])


def _is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def _rows_caption(n: int) -> str:
    return f"({n} row{'s' if n != 1 else ''})"


def render_table(table: pa.Table) -> str:
    """Aligned text columns, numbers right-aligned, nothing cut: the table format off a terminal."""
    names = table.column_names
    cells = [[_text(v) for v in r.values()] for r in rows(table)]
    numeric = [_is_numeric(f.type) for f in table.schema]
    widths = [max([len(n)] + [len(r[j]) for r in cells]) for j, n in enumerate(names)]

    def line(vals):
        parts = [v.rjust(widths[j]) if numeric[j] else v.ljust(widths[j]) for j, v in enumerate(vals)]
        return "  ".join(parts).rstrip()

    out = [line(names), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    out.append(_rows_caption(table.num_rows))
    return "\n".join(out) + "\n"


# a column is not shortened below this many characters (or its name's length) to fit a terminal
MIN_CELL = 12


# C0 controls and DEL from tape values are shown escaped on a terminal, never interpreted
_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F]}


def rich_table(table: pa.Table):
    """`table` for a terminal (a rich renderable): text columns narrowed to fit the console,
    the widest first (wrapped, a long word cut with '…'); numbers never cut; the row count below."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for f in table.schema:
        numeric = _is_numeric(f.type)
        t.add_column(f.name, justify="right" if numeric else "left", overflow="ellipsis", no_wrap=numeric,
                     min_width=None if numeric else min(MIN_CELL, len(f.name)))
    for r in rows(table):
        t.add_row(*(Text(_text(v).translate(_CONTROLS)) for v in r.values()))
    return Group(t, Text(_rows_caption(table.num_rows)))


def print_table(table: pa.Table, out: IO[str] | None = None) -> None:
    """A table for people: fitted to the terminal with rich there, the plain text elsewhere."""
    out = out or sys.stdout
    if not out.isatty():
        out.write(render_table(table))
        return
    from rich.console import Console

    Console(file=out, soft_wrap=False).print(rich_table(table))


def write(table: pa.Table, fmt: str, output: str | Path | None = None) -> None:
    """Write `table` in `fmt` to `output` (a path) or stdout."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (formats: {', '.join(FORMATS)})")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        if output is None:
            if sys.stdout.isatty():
                raise ValueError("--format parquet writes binary: give --output FILE or pipe stdout")
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink, compression="zstd")
            sys.stdout.buffer.write(sink.getvalue().to_pybytes())
        else:
            pq.write_table(table, str(output), compression="zstd")
        return
    if fmt == "table" and output is None:
        print_table(table)
        sys.stdout.flush()
        return
    buf = io.StringIO()
    if fmt == "table":
        buf.write(render_table(table))
    elif fmt == "csv":
        write_csv(table, buf)
    elif fmt == "json":
        write_json(table, buf)
    else:
        write_jsonl(table, buf)
    if output is None:
        sys.stdout.write(buf.getvalue())
        sys.stdout.flush()
    else:
        Path(output).write_text(buf.getvalue())
