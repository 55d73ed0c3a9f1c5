"""Golden tests: (tape, query, expected) triples.

Every tape folder in fixtures/tapes/ is run through every named query (default
parameters); the CSV output (nodetape's own csv writer, so formatting is the
CLI's) must equal tests/golden/expected/<tape>/<query>.csv byte for byte.

Regenerate after an intended change, then review the diff:

    NODETAPE_GOLDEN_UPDATE=1 .venv/bin/python -m pytest tests/golden -q
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

import nodetape
from nodetape.output import write_csv
from nodetape.queries import catalog

REPO = Path(__file__).resolve().parents[2]
TAPES = REPO / "fixtures" / "tapes"
EXPECTED = Path(__file__).resolve().parent / "expected"
UPDATE = os.environ.get("NODETAPE_GOLDEN_UPDATE") == "1"


def _tapes() -> list[Path]:
    if not TAPES.is_dir():
        return []
    return sorted(p for p in TAPES.iterdir() if (p / "manifest.json").is_file())


CASES = [(t.name, q) for t in _tapes() for q in sorted(catalog())]


def run_csv(tape: Path, query: str) -> str:
    buf = io.StringIO()
    write_csv(nodetape.open(tape).query(query), buf)
    return buf.getvalue()


def test_there_is_a_fixture_tape():
    assert _tapes(), f"no tapes in {TAPES}"


@pytest.mark.parametrize(("tape", "query"), CASES, ids=[f"{t}/{q}" for t, q in CASES])
def test_golden(tape, query):
    got = run_csv(TAPES / tape, query)
    path = EXPECTED / tape / f"{query}.csv"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(got)
    assert path.exists(), f"{path} missing: run with NODETAPE_GOLDEN_UPDATE=1 and review it"
    assert got == path.read_text(), f"{tape}/{query} differs from {path} (NODETAPE_GOLDEN_UPDATE=1 to accept)"


def test_no_stale_expected_files():
    known = {f"{t}/{q}.csv" for t, q in CASES}
    found = {f"{p.parent.name}/{p.name}" for p in EXPECTED.glob("*/*.csv")}
    assert found <= known, f"expected files without a tape or query: {sorted(found - known)}"
