"""Golden results survive compaction: every fixture tape, its parts merged as the recorder
merges them (tape/compact.py: sorted by time, range names, the ledger's manifest update),
gives byte-identical CSV for every named query, and stays a sound closed tape."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from nodetape.queries import catalog
from nodetape.schemas import table as table_of
from nodetape.tape.compact import install, merge
from nodetape.tape.format import FORMAT_VERSION, MANIFEST, read_manifest
from nodetape.tape.fs import atomic_write_json
from nodetape.tape.retention import PartInfo, PartLedger, part_range
from nodetape.tape.verify import verify_tape

from test_golden import EXPECTED, _tapes, run_csv  # tests/golden is on sys.path (rootdir-relative, no package)


def compact_copy(src: Path, dst: Path, group: int) -> Path:
    """Copy a closed tape and merge each table's parts `group` at a time (what a recorder's
    compactor does to a live tape, here on a closed one)."""
    shutil.copytree(src, dst)
    m = read_manifest(dst)
    ledger = PartLedger(dst, m, retain_ns=None, max_bytes=None, grace_ns=0, clock=time.monotonic_ns,
                        boot_clock=time.monotonic_ns)
    for name, entry in m.tables.items():
        infos = []
        for n in entry.parts:
            first, last = part_range(n)
            f = dst / name / n
            infos.append(PartInfo(name, first, pq.read_metadata(f).num_rows, f.stat().st_size, None, 0, None,
                                  last=None if last == first else last))
        ledger.parts[name] = infos
        for i in range(0, len(infos) - 1, group):
            run = infos[i:i + group]
            if len(run) > 1:
                assert install(ledger, merge(dst, run, table_of(name).time_column, 0))
    ledger.unlink_pending(force=True)
    m.format_version = FORMAT_VERSION
    atomic_write_json(dst / MANIFEST, m.to_dict())
    return dst


@pytest.fixture(scope="module")
def compacted(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("compacted")
    return {t.name: compact_copy(t, root / t.name, group=3) for t in _tapes()}


CASES = [(t.name, q) for t in _tapes() for q in sorted(catalog())]


def test_fixture_tapes_compact_to_sound_tapes(compacted):
    for name, tape in compacted.items():
        res = verify_tape(tape)
        assert res.sound, res.problems
        assert any("-" in p.path.name.removeprefix("part-") for p in res.parts), f"{name}: nothing was compacted"


@pytest.mark.parametrize(("tape", "query"), CASES, ids=[f"{t}/{q}" for t, q in CASES])
def test_golden_on_compacted_tape(compacted, tape, query):
    expected = (EXPECTED / tape / f"{query}.csv").read_text()
    assert run_csv(compacted[tape], query) == expected, f"{tape}/{query} differs after compaction"
