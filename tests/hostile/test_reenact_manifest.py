"""The manifest's cgroup layout is a path too: hierarchy names and folders that would leave the target."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from replay_util import BOOT0, HYBRID, cg_event, make_tape, rows

from conftest import cli

S = 1_000_000_000


def layout(**hier):
    return {"root": "/sys/fs/cgroup", "mode": "hybrid", "hierarchies": {**HYBRID["hierarchies"], **hier},
            "controllers": HYBRID["controllers"]}


@pytest.mark.parametrize("hier", [
    {"cpu": "/sys/fs/cgroup/../../../canary"},
    {"cpu": "/sys/fs/cgroup/cpu/../../x"},
    {"../canary": "/elsewhere"},
    {"cpu/../../x": "/elsewhere"},
    {"cpu": "/sys/fs/cgroup/a\x00b"},
    {"cpu": 7},
])
@pytest.mark.parametrize("prepare", [True, False])
def test_escaping_hierarchies_are_refused_before_any_write(sandbox, capsys, tmp_path, hier, prepare):
    tape = make_tape(tmp_path / "t", [[("cgroup_events", rows([cg_event(BOOT0 + S, "created", "/a")]))]],
                     cgroup=layout(**hier))
    code, err = cli(capsys, "replay", tape, "--into", sandbox.target, *(["--prepare"] if prepare else ["--max"]))
    assert code == 2 and err.count("\n") == 1 and "cgroup.hierarchies" in err, err
    assert not sandbox.target.exists() and sandbox.unchanged()


def cgroupfs_dir() -> Path | None:
    from nodetape.replay.confine import is_cgroupfs_path

    for p in (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup")):
        if p.is_dir() and is_cgroupfs_path(p):
            return p
    return None


def test_a_real_cgroupfs_target_is_refused_without_the_flag(capsys, tmp_path):
    base = cgroupfs_dir()
    if base is None:
        pytest.skip("no cgroup filesystem mounted here")
    target = base / f"nodetape-hostile-{os.getpid()}"
    tape = make_tape(tmp_path / "t", [[("cgroup_events", rows([cg_event(BOOT0 + S, "created", "/a")]))]])
    for args in (["--prepare"], ["--max"]):
        code, err = cli(capsys, "replay", tape, "--into", target, *args)
        assert code == 2 and "real cgroup filesystem" in err and "--allow-cgroupfs" in err, err
        assert not target.exists()
