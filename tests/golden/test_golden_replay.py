"""Golden replay: `nodetape replay TAPE --max` on every fixture tape gives exactly the
checked-in jsonl (gzipped to keep the repository small; `zcat` to review).

    NODETAPE_GOLDEN_UPDATE=1 .venv/bin/python -m pytest tests/golden -q   # accept a change
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from nodetape.cli import run

REPO = Path(__file__).resolve().parents[2]
TAPES = REPO / "fixtures" / "tapes"
EXPECTED = Path(__file__).resolve().parent / "expected"
UPDATE = os.environ.get("NODETAPE_GOLDEN_UPDATE") == "1"
NAMES = sorted(p.name for p in TAPES.iterdir() if (p / "manifest.json").is_file()) if TAPES.is_dir() else []


@pytest.mark.parametrize("name", NAMES)
def test_replay_jsonl_is_golden(name, tmp_path):
    out = tmp_path / "events.jsonl"
    assert run(["replay", str(TAPES / name), "--max", "--output", str(out)]) == 0
    got = out.read_bytes()
    path = EXPECTED / name / "replay.jsonl.gz"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        # mtime=0: the same bytes give the same file
        path.write_bytes(gzip.compress(got, mtime=0))
    assert path.exists(), f"{path} missing: run with NODETAPE_GOLDEN_UPDATE=1 and review it"
    want = gzip.decompress(path.read_bytes())
    if got != want:
        for i, (a, b) in enumerate(zip(got.splitlines(), want.splitlines())):
            assert a == b, f"{name}: first difference at event {i + 1}"
        assert len(got) == len(want), f"{name}: streams differ in length"
    # and --check agrees, as CI users would run it
    (tmp_path / "want.jsonl").write_bytes(want)
    assert run(["replay", str(TAPES / name), "--check", str(tmp_path / "want.jsonl")]) == 0
