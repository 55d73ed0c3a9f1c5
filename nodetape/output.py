"""One output module for every read command: table, csv, json, jsonl, parquet.

Input is a pyarrow Table; timestamps print as ISO 8601 (UTC), floats with up to
6 significant decimals in text formats, so output is stable and easy to pipe.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
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


# a column is never shortened below this many characters to fit a terminal
MIN_CELL = 12


def fit_widths(widths: list[int], budget: int, floor: int = MIN_CELL) -> list[int]:
    """Shorten the widest columns, one step at a time, until their sum fits `budget` (or all are at `floor`)."""
    widths = list(widths)
    while sum(widths) > budget:
        j = max(range(len(widths)), key=widths.__getitem__)
        others = max((w for k, w in enumerate(widths) if k != j), default=0)
        target = max(floor, widths[j] - (sum(widths) - budget), min(others, widths[j] - 1))
        if target >= widths[j]:
            break
        widths[j] = target
    return widths


def terminal_width() -> int | None:
    """The terminal's width when stdout is one; None (no limit) when it is piped or redirected."""
    return shutil.get_terminal_size((160, 24)).columns if sys.stdout.isatty() else None


def render_table(table: pa.Table, max_width: int | None = None) -> str:
    """Aligned text columns, numbers right-aligned. Given `max_width` (a terminal's), the
    widest columns are shortened with '…' until lines fit; without it nothing is cut."""
    names = table.column_names
    cells = [[_text(v) for v in r.values()] for r in rows(table)]
    numeric = [pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_decimal(f.type)
               for f in table.schema]
    widths = [max([len(n)] + [len(r[j]) for r in cells]) for j, n in enumerate(names)]
    if max_width is not None:
        widths = fit_widths(widths, max_width - 2 * (len(names) - 1))

    def line(vals):
        vals = [v if len(v) <= widths[j] else v[: widths[j] - 1] + "…" for j, v in enumerate(vals)]
        parts = [v.rjust(widths[j]) if numeric[j] else v.ljust(widths[j]) for j, v in enumerate(vals)]
        return "  ".join(parts).rstrip()

    out = [line(names), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    out.append(f"({table.num_rows} row{'s' if table.num_rows != 1 else ''})")
    return "\n".join(out) + "\n"


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
    buf = io.StringIO()
    if fmt == "table":
        buf.write(render_table(table, max_width=terminal_width() if output is None else None))
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
