"""`nodetape snapshot` signals only the `nodetape record` writing this very tape, whatever the manifest
claims; a failed snapshot leaves nothing behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hostile_tapes import copy_fixture, edit_manifest, first_part

from nodetape.cli import run
from nodetape.tape import snapshot as snap
from nodetape.tape.snapshot import _is_record_of, process_start_ticks


@pytest.fixture
def bystander():
    """An innocent process the hostile manifest names (a real one: the attack signalled it dead)."""
    procs = []

    def start(*argv):
        p = subprocess.Popen(list(argv))
        procs.append(p)
        return p
    yield start
    for p in procs:
        p.kill()
        p.wait()


def _boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def _claim(tape: Path, pid: int, *, boot_id: str | None, ticks: int | None = None) -> None:
    def edit(m):
        m["closed"] = False
        m["recorder"] = {"pid": pid, "start_ticks": process_start_ticks(pid) if ticks is None else ticks}
        if boot_id is not None:
            m["recorder"]["boot_id"] = boot_id
    edit_manifest(tape, edit)


@pytest.mark.parametrize("argv,boot", [
    (["sleep", "60"], "ours"),
    (["sleep", "60"], None),
    ([sys.executable, "-c", "import time; time.sleep(60)"], "ours"),
])
def test_snapshot_never_signals_a_process_that_is_not_the_recorder(tmp_path, capsys, bystander, argv, boot):
    tape = copy_fixture(tmp_path)
    p = bystander(*argv)
    _claim(tape, p.pid, boot_id=_boot_id() if boot else None)
    assert run(["snapshot", str(tape), str(tmp_path / "out" / "snap")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no live recorder owns this tape" in err[0] and "manifest.json" in err[0]
    assert p.poll() is None  # still alive: never signalled
    assert not (tmp_path / "out").exists()
    assert not list(tape.glob(".snapshot-request-*"))


def test_a_gone_recorder_means_a_copy(tmp_path, capsys, bystander):
    tape = copy_fixture(tmp_path)
    p = bystander("sleep", "60")
    # the pid runs, but started at another time: the recorder that had it is gone
    _claim(tape, p.pid, boot_id=_boot_id(), ticks=process_start_ticks(p.pid) + 1)
    assert run(["snapshot", str(tape), str(tmp_path / "copy")]) == 0
    assert "copied from the parts on disk" in capsys.readouterr().err and p.poll() is None
    assert run(["verify", str(tmp_path / "copy")]) == 0


def test_record_command_lines():
    here = Path.cwd()
    tape = here / "some" / "tape"
    assert _is_record_of(["/usr/bin/python3", "/venv/bin/nodetape", "record", "some/tape", "--quiet"], str(here), tape)
    assert _is_record_of(["python3", "-m", "nodetape.cli", "record", str(tape)], "/", tape)
    assert not _is_record_of(["python3", "-m", "nodetape.cli", "record", "other"], str(here), tape)
    assert not _is_record_of(["python3", "-m", "nodetape.cli", "info", str(tape)], "/", tape)
    assert not _is_record_of(["python3", "-c", "x", "nodetape", "record", str(tape)], "/", tape)
    assert not _is_record_of(["python3"], "/", tape)


def test_a_snapshot_of_a_damaged_tape_leaves_nothing(tmp_path, capsys):
    tape = copy_fixture(tmp_path)
    part = first_part(tape, "cgroup_events")
    part.unlink()
    assert run(["snapshot", str(tape), str(tmp_path / "a" / "b" / "snap")]) == 2
    assert str(part) in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_a_snapshot_failing_midway_leaves_nothing(tmp_path, capsys, monkeypatch):
    tape = copy_fixture(tmp_path)

    def full(*_a, **_k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(snap, "atomic_write_json", full)
    rc = run(["snapshot", str(tape), str(tmp_path / "a" / "b" / "snap")])
    assert rc != 0 and "No space left" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [tape.name]
