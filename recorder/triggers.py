"""Automatic snapshot triggers (`record --snapshot-on`), evaluated on rows flowing to the tape.

Grammar (case-insensitive):
  psi RESOURCE some|full [avg10|avg60|avg300] > N[%]   system PSI of RESOURCE above N
  oom_kill                                               a cgroup_events row of kind oom_kill

Pure: parsing works on strings, `fired` on one Arrow batch of one table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

_PSI = re.compile(r"psi\s+(cpu|memory|io|irq)\s+(some|full)(?:\s+(avg10|avg60|avg300))?\s*(>=|>)\s*(\d+(?:\.\d+)?)\s*%?")


@dataclass(frozen=True)
class Trigger:
    spec: str
    kind: str  # 'psi' or 'oom_kill'
    resource: str | None = None
    column: str | None = None  # e.g. some_avg10
    threshold: float | None = None
    inclusive: bool = False

    @property
    def label(self) -> str:
        if self.kind == "psi":
            return f"psi-{self.resource}-{self.column.replace('_', '-')}"
        return self.kind


def parse_trigger(text: str) -> Trigger:
    s = " ".join(text.strip().lower().split())
    if s in ("oom_kill", "oom-kill", "oom"):
        return Trigger(text, "oom_kill")
    m = _PSI.fullmatch(s)
    if m:
        resource, which, window, op, n = m.groups()
        return Trigger(text, "psi", resource, f"{which}_{window or 'avg10'}", float(n), op == ">=")
    raise ValueError(f"bad trigger {text!r} (use e.g. \"psi memory some > 20%\" or oom_kill)")


def _eq(col: pa.Array, value: str) -> pa.Array:
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    return pc.equal(col, value)


def fired(trigger: Trigger, table: str, batch: pa.RecordBatch) -> bool:
    """True when `batch` of `table` holds a row matching the trigger."""
    if batch.num_rows == 0:
        return False
    if trigger.kind == "oom_kill":
        if table != "cgroup_events":
            return False
        return bool(pc.any(_eq(batch.column("kind"), "oom_kill")).as_py())
    if table != "psi_samples":
        return False
    vals = batch.column(trigger.column)
    over = pc.greater_equal(vals, trigger.threshold) if trigger.inclusive else pc.greater(vals, trigger.threshold)
    mask = pc.and_kleene(pc.and_kleene(_eq(batch.column("scope"), "system"),
                                       _eq(batch.column("resource"), trigger.resource)), over)
    return bool(pc.any(mask).as_py())
