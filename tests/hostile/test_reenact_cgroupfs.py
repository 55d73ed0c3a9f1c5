"""`replay --into` a real cgroup filesystem with --allow-cgroupfs: only the tape's own cgroups are
touched (made, written where the kernel allows, removed); the target's own files and every other
cgroup stay as they were. Real cgroup2, so root and the kernel lock."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kernelutil import require, require_root, rmdir_tree, unique_name
from replay_util import BOOT0, V2, cg_event, make_tape, rows

from conftest import cli, tree

pytestmark = pytest.mark.kernel
S = 1_000_000_000


def cgroup2_mount() -> Path | None:
    from nodetape.replay.confine import is_cgroupfs_path

    for p in (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup")):
        if (p / "cgroup.controllers").exists() and is_cgroupfs_path(p):
            return p
    return None


def test_allow_cgroupfs_touches_only_the_tapes_cgroups(capsys, tmp_path):
    require_root()
    base = cgroup2_mount()
    require(base is not None, "no cgroup2 mount")
    target = base / unique_name("nt-reenact")
    os.mkdir(target)
    try:
        tape = make_tape(tmp_path / "t", [[
            ("cgroup_events", rows([cg_event(BOOT0 + S, "created", "/a"), cg_event(BOOT0 + S, "created", "/a/b"),
                                    cg_event(BOOT0 + 2 * S, "attach", "/a/b", pid=1),
                                    cg_event(BOOT0 + 3 * S, "removed", "/a")])),
            ("psi_samples", {"ts_ns": [BOOT0 + S], "scope": ["system"], "resource": ["cpu"], "some_avg10": [1.0],
                             "some_avg60": [1.0], "some_avg300": [1.0], "some_total_usec": [9]}),
        ]], cgroup=V2)
        siblings = sorted(os.listdir(base))
        own = tree(target)
        code, err = cli(capsys, "replay", tape, "--into", target, "--max")
        assert code == 2 and "--allow-cgroupfs" in err, err
        assert tree(target) == own
        # up to the removal: the tape's cgroups are real cgroups now, pid 1 was not moved
        code, err = cli(capsys, "replay", tape, "--into", target, "--allow-cgroupfs", "--max",
                        "--to", str(BOOT0 + 3 * S))
        assert code == 0, err
        assert (target / "a" / "b" / "cgroup.procs").read_text() == ""
        assert "1" in (base / "cgroup.procs").read_text().split() or not (base / "cgroup.procs").exists()
        code, err = cli(capsys, "replay", tape, "--into", target, "--allow-cgroupfs", "--max")
        assert code == 0, err
        assert not (target / "a").exists()
        assert sorted(os.listdir(base)) == siblings
        assert {k: v for k, v in tree(target).items() if "pressure" not in k} == \
            {k: v for k, v in own.items() if "pressure" not in k}
    finally:
        rmdir_tree(target)
