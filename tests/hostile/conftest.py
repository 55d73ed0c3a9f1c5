"""Hostile tapes: a sandbox with a canary tree beside the target, and a snapshot of the target's parent.

Each test crafts a tape (pyarrow, through the real writer or by rewriting its
files), runs the real CLI, and compares the sandbox before and after: names,
sizes, mtimes of everything outside the target, links not followed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from nodetape.cli import run


def tree(root: Path, skip: Path | None = None) -> dict[str, tuple]:
    """(kind, size, mtime_ns, link target) of everything under root, links not followed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if skip is not None and Path(dirpath) == skip.parent:
            dirnames[:] = [d for d in dirnames if d != skip.name]
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if skip is not None and p == skip:
                continue
            st = p.lstat()
            link = os.readlink(p) if p.is_symlink() else None
            out[str(p.relative_to(root))] = (st.st_mode >> 12, st.st_size, st.st_mtime_ns, link)
    return out


class Sandbox:
    def __init__(self, base: Path):
        self.base = base  # the target's parent
        self.target = base / "target"
        self.canary = base / "canary"
        (self.canary / "deep" / "er").mkdir(parents=True)
        (self.canary / "file").write_text("canary\n")
        (self.canary / "deep" / "er" / "cpu.stat").write_text("usage_usec 1\n")
        (base / "victim").mkdir()
        (base / "victim" / "keep").write_text("keep\n")
        (base / "x").mkdir()  # a sibling '../x' would land in
        self.before = tree(base, skip=self.target)

    def unchanged(self) -> bool:
        return tree(self.base, skip=self.target) == self.before


@pytest.fixture
def sandbox(tmp_path) -> Sandbox:
    base = tmp_path / "sb" / "parent"
    base.mkdir(parents=True)
    return Sandbox(base)


def cli(capsys, *args) -> tuple[int, str]:
    """The real CLI in-process: (exit code, stderr)."""
    capsys.readouterr()
    code = run([str(a) for a in args])
    err = capsys.readouterr().err
    sys.stderr.flush()
    return code, err
