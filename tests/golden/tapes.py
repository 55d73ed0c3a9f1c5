"""Hand-written tapes for query-logic unit tests.

THESE ROWS ARE TEST INPUTS FOR SQL, NOT RECORDINGS. They exist so the named
queries' arithmetic and joins (deltas, counter resets, hierarchy dedupe, eBPF
preference) can be checked on exact numbers. Golden tests and kernel tests run
on tapes recorded from the real kernel (fixtures/tapes/, tests/kernel/).
"""

from __future__ import annotations

from pathlib import Path

from nodetape.tape.format import new_manifest
from nodetape.schemas import SCHEMA_VERSION, batch
from nodetape.tape.writer import TapeWriter

# A fixed wall-clock offset so timestamps in expected values are readable:
# boottime 0 is 2024-01-01T00:00:00Z.
OFFSET_NS = 1_704_067_200_000_000_000
S = 1_000_000_000
MS = 1_000_000


def write_tape(path: Path, tables: dict[str, dict], host: str = "node-a", offset_ns: int = OFFSET_NS) -> Path:
    """A closed tape at `path` holding the given {table: {column: values}} rows."""
    manifest = new_manifest(
        host={"hostname": host}, clock_pair=(0, offset_ns), cgroup={"mode": "hybrid"},
        options={"test_input": "hand-written rows for SQL unit tests, not a recording"},
        schema_version=SCHEMA_VERSION,
    )
    w = TapeWriter(path, manifest)
    for name, cols in tables.items():
        w.append(name, batch(name, cols))
    w.close(end_ns=max((max(c.get("ts_ns") or c.get("interval_end_ns") or [0]) for c in tables.values()), default=0))
    return path


def rows(table) -> list[dict]:
    return table.to_pylist()
