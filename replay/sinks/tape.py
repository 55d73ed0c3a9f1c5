"""`replay --out TAPE2`: the filtered slice as a new, valid tape.

Rows are copied batch by batch (Arrow, no per-row Python) in merge-consistent
order per table (time, then seq), so the writer's renumbered `seq` keeps the
recorded tie order. The new manifest keeps the original's host, clock and
cgroup layout (so ISO times and `--into` work on the slice too) and its
sources' status, and says what it is a slice of under `slice`. A slice with
a start also carries the rows that describe the state at that start
(prologue.py), counted in `slice.carried_rows`.

The slice is built in a hidden sibling folder and renamed onto TAPE2 only when
complete: a failure (a corrupt part, a full disk, a path the user cannot write)
leaves nothing behind, so the same command can simply be run again. An offline
copy never drops rows: the writer's back-pressure bound (meant for a live
recorder that must not fall behind) is lifted, and any row it still dropped
fails the slice.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from nodetape.core.errors import TapeError, UserError
from nodetape.schemas import SCHEMA_VERSION, conform
from nodetape.tape.format import Manifest
from nodetape.tape.writer import TapeWriter
from ..merge import sorted_batches


def slice_manifest(replay, sel, options: dict) -> Manifest:
    """The slice's manifest: made by the one constructor every derived tape (slice, snapshot) uses."""
    src = replay.tapes[0].manifest
    start = sel.lo if sel.lo is not None else src.start_ns
    if sel.lo is not None and src.start_ns is not None:
        start = max(sel.lo, int(src.start_ns))
    return Manifest.derived(src, start_ns=start, schema_version=SCHEMA_VERSION, slice={
        "of": [str(t.path) for t in replay.tapes], "from_ns": sel.lo, "to_ns": sel.hi,
        "tables": [t.name for t in sel.tables], **{k: v for k, v in options.items() if v is not None}})


def _write_prologue(replay, sel, writer) -> dict[str, int]:
    """Rows before the window that describe the state at its start (prologue.py); rows per table."""
    import duckdb

    from nodetape.tape.reader import connect
    from ..prologue import prologue

    con = connect(replay.tapes)
    carried = {}
    for t in sel.tables:
        try:
            rows = prologue(con, t, sel.lo)
        except duckdb.Error as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            where = replay.tapes[0].path / t.name
            raise TapeError(f"{where}: cannot read the rows before --from ({first})", str(where)) from None
        if rows is None or not rows.num_rows:
            continue
        for b in conform(t.name, rows).to_batches():
            m = sel.rf.mask(t, b) if sel.rf is not None else None
            if m is not None:
                b = b.filter(m)
            if b.num_rows:
                writer.append(t.name, b)
                carried[t.name] = carried.get(t.name, 0) + b.num_rows
    return carried


def _fill(replay, sel, tmp: Path, options: dict) -> None:
    src_end = replay.manifest.get("end_ns") or replay.manifest.get("last_flush_ns")
    # an offline copy has no live stream to keep up with: it never drops rows
    writer = TapeWriter(tmp, slice_manifest(replay, sel, options), offline=True)
    if sel.lo is not None:
        # the state at the window's start first: older rows, so every table stays in time order
        carried = _write_prologue(replay, sel, writer)
        writer.manifest.slice["carried_rows"] = carried
    for run in sorted(replay.runs(sel), key=lambda r: (r.table_idx, r.part_idx)):
        for b in sorted_batches(run, sel.lo, sel.hi, sel.rf):
            writer.append(run.table.name, b)
    end = sel.hi if sel.hi is not None else src_end
    if sel.hi is not None and src_end is not None:
        end = min(sel.hi, int(src_end))
    writer.close(end)


def write_slice(replay, sel, out: Path, options: dict) -> None:
    """Write the selection as a tape at `out`, whole or not at all."""
    if len(replay.tapes) != 1:
        raise UserError("--out: slice one tape at a time (several tapes have several hosts and clocks)")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out}: exists and is not an empty folder", str(out))
    tmp = out.parent / f".{out.name}.slice-{os.getpid()}"
    try:
        _fill(replay, sel, tmp, options)
        os.rename(tmp, out)  # also replaces an empty folder the user made
    except OSError as e:
        raise UserError(f"--out {out}: cannot write the slice: {e.strerror or e}", str(out)) from None
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
