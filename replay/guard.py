"""Validate a whole re-enactment before it writes anything (confine.py says what a safe value is).

`replay --into` reads the rows it will apply (the same window and filters) once
beforehand and refuses the tape, exit 2, at the first row whose path could not
resolve beneath the target: the table, its `seq` (cgroup_events) or `ts_ns`
(tables without seq), its part, the column and why. Each distinct value is
checked once per batch (the string columns are dictionaries of a few values).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from nodetape.core.errors import UserError
from .confine import Escape, components, plain_name, shown
from .merge import sorted_batches

# the columns of each re-enacted table that become paths, and how each is checked
CHECKS = {
    "cgroup_events": (("cgroup_path", components),),
    "cgroup_samples": (("cgroup_path", components),),
    "psi_samples": (("scope", lambda v: v in ("system", "/") or components(v)), ("resource", plain_name)),
}


def _bad_value(col: pa.Array, check) -> tuple[object, str] | None:
    """The first distinct non-NULL value of col that fails `check`, with the reason."""
    if not pa.types.is_dictionary(col.type):
        col = pc.dictionary_encode(col)
    # only the values rows use: a filtered batch keeps its whole dictionary
    used = pc.drop_null(pc.unique(col.indices))
    for v in col.dictionary.take(used).to_pylist():
        if v is None:
            continue
        try:
            check(v)
        except Escape as e:
            return v, str(e)
    return None


def _first_row(b: pa.RecordBatch, name: str, value) -> str:
    col = b.column(name)
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    i = pc.index(col, pa.scalar(value, col.type)).as_py()
    if "seq" in b.schema.names:
        return f"seq {b.column('seq')[i].as_py()}"
    return f"ts_ns {b.column(b.schema.names[0])[i].as_py()}"


def check_selection(runs, lo, hi, rf) -> None:
    """UserError naming the table, row and part of the first value that would leave the target."""
    runs = sorted((r for r in runs if r.table.name in CHECKS), key=lambda r: (r.table_idx, r.tape_idx, r.part_idx))
    for run in runs:
        for b in sorted_batches(run, lo, hi, rf):
            for name, check in CHECKS[run.table.name]:
                bad = _bad_value(b.column(name), check)
                if bad is not None:
                    value, why = bad
                    row = _first_row(b, name, value)
                    raise UserError(f"--into: refusing the tape: {run.table.name} {row} ({run.path.name}): "
                                    f"{name} {shown(value)} {why}, it would leave the target folder",
                                    str(run.path))
