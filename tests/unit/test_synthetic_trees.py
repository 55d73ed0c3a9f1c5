"""The checked-in synthetic cgroup2 trees (fixtures/synthetic/) are what make_trees.py writes."""

from __future__ import annotations

import filecmp
import importlib.util
import subprocess
import sys
from pathlib import Path

SYNTH = Path(__file__).resolve().parents[2] / "fixtures" / "synthetic"


def _make_trees():
    spec = importlib.util.spec_from_file_location("make_trees", SYNTH / "make_trees.py")
    mt = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_trees", mt)  # dataclasses look their module up there
    spec.loader.exec_module(mt)
    return mt


def test_checked_in_trees_equal_a_fresh_run(tmp_path):
    mt = _make_trees()
    subprocess.run([sys.executable, str(SYNTH / "make_trees.py"), str(tmp_path)], check=True, capture_output=True)
    for name in mt.TREES:
        a, b = SYNTH / name, tmp_path / name
        files_a = sorted(str(f.relative_to(a)) for f in a.rglob("*"))
        files_b = sorted(str(f.relative_to(b)) for f in b.rglob("*"))
        assert files_a == files_b, name
        _, mismatch, errors = filecmp.cmpfiles(a, b, [f for f in files_a if (a / f).is_file()], shallow=False)
        assert not mismatch and not errors, (mismatch, errors)
