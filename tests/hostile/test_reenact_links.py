"""Symbolic links inside the target are never followed: not to make, write or remove anything elsewhere."""

from __future__ import annotations

import os

from replay_util import BOOT0, V2, cg_event, make_tape, rows

from conftest import cli

S = 1_000_000_000


def prepared(sandbox, capsys, tape):
    code, err = cli(capsys, "replay", tape, "--into", sandbox.target, "--prepare")
    assert code == 0, err
    return sandbox.target


def test_a_directory_link_is_not_built_through(sandbox, capsys, tmp_path):
    tape = make_tape(tmp_path / "t", [[("cgroup_events", rows([
        cg_event(BOOT0 + S, "created", "/kubepods/pod1"), cg_event(BOOT0 + 2 * S, "removed", "/kubepods/pod1")]))]],
        cgroup=V2)
    target = prepared(sandbox, capsys, tape)
    os.symlink("../canary/deep", target / "kubepods")
    sandbox.before = sandbox.before  # the link is inside the target: the outside must not change
    code, err = cli(capsys, "replay", tape, "--into", target, "--max")
    assert code == 2 and "symbolic link" in err and err.count("\n") == 1, err
    assert not (sandbox.canary / "deep" / "pod1").exists() and sandbox.unchanged()


def test_a_file_link_is_not_written_through(sandbox, capsys, tmp_path):
    tape = make_tape(tmp_path / "t", [[("cgroup_events", rows([cg_event(BOOT0 + S, "created", "/a")])),
                                       ("cgroup_samples", {"ts_ns": [BOOT0 + 2 * S], "hierarchy": ["unified"],
                                                           "cgroup_path": ["/a"], "nr_periods": [7],
                                                           "cpu_usage_usec": [5]})]], cgroup=V2)
    target = prepared(sandbox, capsys, tape)
    (target / "a").mkdir()
    os.symlink(sandbox.canary / "file", target / "a" / "cpu.stat")
    code, err = cli(capsys, "replay", tape, "--into", target, "--max")
    assert code == 2 and "symbolic link" in err, err
    assert (sandbox.canary / "file").read_text() == "canary\n" and sandbox.unchanged()


def test_removing_a_linked_folder_removes_the_link_only(sandbox, capsys, tmp_path):
    tape = make_tape(tmp_path / "t", [[("cgroup_events", rows([cg_event(BOOT0 + S, "removed", "/a"),
                                                                cg_event(BOOT0 + S, "removed", "/b")]))]], cgroup=V2)
    target = prepared(sandbox, capsys, tape)
    os.symlink(sandbox.canary, target / "a")
    (target / "b").mkdir()
    os.symlink(sandbox.base / "victim", target / "b" / "inner")
    os.symlink(sandbox.canary / "file", target / "b" / "cgroup.procs")
    code, err = cli(capsys, "replay", tape, "--into", target, "--max")
    assert code == 0, err
    assert not os.path.lexists(target / "a") and not os.path.lexists(target / "b")
    assert sandbox.unchanged() and (sandbox.base / "victim" / "keep").exists()


def test_the_root_is_never_removed(sandbox, capsys, tmp_path):
    tape = make_tape(tmp_path / "t", [[("cgroup_events", rows([cg_event(BOOT0 + S, "removed", "/"),
                                                                cg_event(BOOT0 + S, "removed", "")]))]], cgroup=V2)
    code, err = cli(capsys, "replay", tape, "--into", sandbox.target, "--max")
    assert code == 0, err
    assert (sandbox.target / "cgroup.controllers").exists() and sandbox.unchanged()
