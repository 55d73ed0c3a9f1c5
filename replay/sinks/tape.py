"""`replay --out TAPE2`: the filtered slice as a new, valid tape.

Rows are copied batch by batch (Arrow, no per-row Python) in merge-consistent
order per table (time, then seq), so the writer's renumbered `seq` keeps the
recorded tie order. The new manifest keeps the original's host, clock and
cgroup layout (so ISO times and `--into` work on the slice too) and its
sources' status, and says what it is a slice of under `slice`. A slice with
a start also carries the rows that describe the state at that start
(prologue.py), counted in `slice.carried_rows`.
"""

from __future__ import annotations

import copy
from pathlib import Path

from nodetape.core.errors import UserError
from nodetape.tape.format import FORMAT
from ...schemas import SCHEMA_VERSION
from nodetape.tape.writer import TapeWriter
from ..merge import sorted_batches


def slice_manifest(replay, sel, options: dict) -> dict:
    src = replay.manifest
    m = {
        "format": FORMAT,
        "nodetape_version": src.get("nodetape_version"),
        "schema_version": SCHEMA_VERSION,
        "host": copy.deepcopy(src.get("host", {})),
        "clock": copy.deepcopy(src["clock"]),
        "cgroup": copy.deepcopy(src.get("cgroup", {})),
        "options": copy.deepcopy(src.get("options", {})),
        "start_ns": sel.lo if sel.lo is not None else src.get("start_ns"),
        "end_ns": None,
        "closed": False,
        "sources": copy.deepcopy(src.get("sources", {})),
        "tables": {},
        "slice": {
            "of": [str(t.path) for t in replay.tapes],
            "from_ns": sel.lo,
            "to_ns": sel.hi,
            "tables": [t.name for t in sel.tables],
            **{k: v for k, v in options.items() if v is not None},
        },
    }
    if sel.lo is not None and src.get("start_ns") is not None:
        m["start_ns"] = max(sel.lo, int(src["start_ns"]))
    return m


def _write_prologue(replay, sel, writer) -> dict[str, int]:
    """Rows before the window that describe the state at its start (prologue.py); rows per table."""
    from nodetape.tape.reader import connect
    from ..prologue import prologue

    con = connect(replay.tapes)
    carried = {}
    for t in sel.tables:
        rows = prologue(con, t, sel.lo)
        if rows is None or not rows.num_rows:
            continue
        for b in rows.cast(t.schema).to_batches():
            m = sel.rf.mask(t, b) if sel.rf is not None else None
            if m is not None:
                b = b.filter(m)
            if b.num_rows:
                writer.append(t.name, b)
                carried[t.name] = carried.get(t.name, 0) + b.num_rows
    return carried


def write_slice(replay, sel, out: Path, options: dict) -> dict:
    """Write the selection as a tape at `out`; returns its manifest."""
    if len(replay.tapes) != 1:
        raise UserError("--out: slice one tape at a time (several tapes have several hosts and clocks)")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out}: exists and is not an empty folder", str(out))
    src_end = replay.manifest.get("end_ns") or replay.manifest.get("last_flush_ns")
    writer = TapeWriter(out, slice_manifest(replay, sel, options), offline=True)
    if sel.lo is not None:
        # the state at the window's start first: older rows, so every table stays in time order
        carried = _write_prologue(replay, sel, writer)
        writer.manifest["slice"]["carried_rows"] = carried
    for run in sorted(replay.runs(sel), key=lambda r: (r.table_idx, r.part_idx)):
        for b in sorted_batches(run, sel.lo, sel.hi, sel.rf):
            writer.append(run.table.name, b)
    end = sel.hi if sel.hi is not None else src_end
    if sel.hi is not None and src_end is not None:
        end = min(sel.hi, int(src_end))
    writer.close(end)
    # the writer stamps the flush with this machine's clock: meaningless for a slice
    writer.manifest.pop("last_flush_ns", None)
    writer.write_manifest()
    return writer.manifest
