"""`nodetape replay` as a user meets it: the stream on stdout, --check exit codes, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from replay_util import BOOT0, cg_event, make_tape, rows

S = 1_000_000_000


def nodetape(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nodetape.cli", *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def tape(tmp_path_factory):
    return make_tape(tmp_path_factory.mktemp("replaycli") / "tape", [[("cgroup_events", rows([
        cg_event(BOOT0 + 1 * S, "created", "/a"), cg_event(BOOT0 + 2 * S, "removed", "/a")]))]])


def test_stream_to_a_pipe_goes_at_full_speed_and_checks(tape, tmp_path):
    r = nodetape("replay", tape)
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.count("\n") == 2 and r.stdout.startswith('{"table":"cgroup_events","ts_ns":1001000000000,')
    exp = tmp_path / "exp.jsonl"
    exp.write_text(r.stdout)
    assert nodetape("replay", tape, "--check", exp).returncode == 0
    exp.write_text(r.stdout.replace('"/a"', '"/b"', 1))
    bad = nodetape("replay", tape, "--check", exp)
    assert bad.returncode == 1 and "event 1" in bad.stdout and '"/b"' in bad.stdout and '"/a"' in bad.stdout


@pytest.mark.parametrize("args, needle", [
    (["--from", "soon"], "--from"),
    (["--tables", "nope"], "--tables"),
    (["--speed", "0"], "--speed"),
    (["--speed", "2", "--max"], "--max"),
    (["--format", "csv"], "--format"),
    (["--from", "+5s", "--to", "+1s"], "--to"),
    (["--check", "/nonexistent/x.jsonl"], "--check"),
])
def test_bad_options_exit_2_with_one_line(tape, args, needle):
    r = nodetape("replay", tape, *args)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and needle in r.stderr and "Traceback" not in r.stderr


def test_missing_tape_and_into_a_tape_without_layout(tmp_path):
    r = nodetape("replay", tmp_path / "nope")
    assert r.returncode == 2 and "no such tape" in r.stderr
    t = make_tape(tmp_path / "t", [[]], cgroup={"mode": "none"})
    r = nodetape("replay", t, "--into", tmp_path / "cg")
    assert r.returncode == 2 and "--into" in r.stderr and r.stderr.count("\n") == 1
