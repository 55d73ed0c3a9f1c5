"""Damaged parts of a closed tape: every reading command says so (exit 2, one line naming the part)
instead of answering with fewer rows; `nodetape verify` finds every kind; --allow-damaged reads the rest."""

from __future__ import annotations

import io

import pytest
from hostile_tapes import (FIXTURES, copy_fixture, first_part, flip_byte, lie_about_max, lie_about_rows,
                           null_in, rewrite)

from nodetape.cli import run
from nodetape.tape.reader import open_tapes

COMMANDS = [
    ["info", "{tape}"],
    ["query", "{tape}", "pod_births"],
    ["sql", "{tape}", "SELECT count(*) FROM cgroup_events"],
    ["replay", "{tape}", "--max"],
    ["report", "{tape}"],
]


def _cli(capsys, *args) -> tuple[int, str, str]:
    rc = run([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def _assert_names(capsys, tape, part, why: str) -> None:
    for cmd in COMMANDS:
        rc, _, err = _cli(capsys, *[a.format(tape=tape) for a in cmd])
        assert rc == 2, (cmd, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and str(part) in lines[0] and why in lines[0], (cmd, err)


def test_a_part_missing_from_a_closed_tape_is_damage_for_every_reader(tmp_path, capsys):
    tape = copy_fixture(tmp_path)
    part = first_part(tape, "cgroup_events")
    part.unlink()
    _assert_names(capsys, tape, part, "part named by the manifest is missing")


def test_a_truncated_part_is_damage_for_every_reader(tmp_path, capsys):
    tape = copy_fixture(tmp_path)
    part = first_part(tape, "cgroup_events")
    rewrite(part, part.read_bytes()[:-100])
    _assert_names(capsys, tape, part, "corrupt or truncated")


def test_a_planted_part_in_a_closed_tape_is_damage(tmp_path, capsys):
    tape = copy_fixture(tmp_path)
    src = first_part(tape, "cgroup_events")
    planted = src.with_name("part-000099.parquet")
    planted.write_bytes(src.read_bytes())
    _assert_names(capsys, tape, planted, "not named by the manifest")


def test_a_footer_claiming_billions_of_rows_is_damage_not_an_allocation(tmp_path, capsys):
    tape = copy_fixture(tmp_path)
    part = first_part(tape, "cgroup_events")
    lie_about_rows(part, 5_000_000_000)
    _assert_names(capsys, tape, part, "footer claims 5000000000 rows")


def test_a_null_in_ts_ns_is_damage_for_every_reader(tmp_path, capsys):
    tape = copy_fixture(tmp_path)
    part = first_part(tape, "cgroup_events")
    null_in(part, "ts_ns")
    _assert_names(capsys, tape, part, "NULL in non-null column ts_ns")


def test_an_altered_checksummed_part_of_the_same_size_is_found_by_verify(tmp_path, capsys):
    # snapshot copies of a fixture carry checksums (format 2); readers check size and footer on open
    snap = tmp_path / "snap"
    assert _cli(capsys, "snapshot", FIXTURES / "runc-birth-no-ebpf", snap)[0] == 0
    part = first_part(snap, "cgroup_events")
    flip_byte(part, 10)
    rc, out, _ = _cli(capsys, "verify", snap)
    assert rc == 2 and f"{part}: checksum mismatch" in out
    # a part grown or shrunk is damage for every reader too
    rewrite(part, part.read_bytes() + b"x")
    _assert_names(capsys, snap, part, "truncated or altered")


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.iterdir() if (p / "manifest.json").exists()))
def test_verify_passes_every_fixture_and_its_snapshot(tmp_path, capsys, name):
    rc, out, _ = _cli(capsys, "verify", FIXTURES / name)
    assert rc == 0 and "sound" in out and "unverified (no checksum in the manifest)" in out
    assert _cli(capsys, "snapshot", FIXTURES / name, tmp_path / "s")[0] == 0
    rc, out, _ = _cli(capsys, "verify", tmp_path / "s")
    assert rc == 0 and "sound" in out and "unverified" not in out


@pytest.mark.parametrize("damage,why", [
    ("flip", ""),
    ("remove", "part named by the manifest is missing"),
    ("rows", "footer claims 5000000000 rows"),
    ("stats", "footer statistics of ts_ns say"),
    ("null", "NULL in non-null column ts_ns"),
])
def test_verify_names_each_kind_of_damage(tmp_path, capsys, damage, why):
    tape = copy_fixture(tmp_path)
    part = first_part(tape, "cgroup_events")
    if damage == "flip":
        flip_byte(part)
    elif damage == "remove":
        part.unlink()
    elif damage == "rows":
        lie_about_rows(part, 5_000_000_000)
    elif damage == "stats":
        lie_about_max(part, "ts_ns")
    else:
        null_in(part, "ts_ns")
    rc, out, _ = _cli(capsys, "verify", tape)
    assert rc == 2 and "DAMAGED" in out
    assert any(str(part) in line and why in line for line in out.splitlines()), out


def test_allow_damaged_reads_what_is_sound_and_says_what_it_skipped(tmp_path):
    tape = copy_fixture(tmp_path)
    part = first_part(tape, "cgroup_events")
    part.unlink()
    err = io.StringIO()
    t = open_tapes([tape], allow_damaged=True, stderr=err)[0]
    assert part not in t.parts["cgroup_events"] and t.parts["cgroup_events"]
    assert err.getvalue().strip() == f"nodetape: skipped damaged {part}: part named by the manifest is missing"


def test_a_slice_carries_checksums_and_verifies(tmp_path, capsys):
    out = tmp_path / "slice"
    assert _cli(capsys, "replay", FIXTURES / "oom-kill", "--out", out, "--from", "+1s")[0] == 0
    rc, report, _ = _cli(capsys, "verify", out)
    assert rc == 0 and "sound" in report and "unverified" not in report


def test_verify_reports_each_tape_even_when_one_manifest_is_bad(tmp_path, capsys):
    bad = copy_fixture(tmp_path, "oom-kill")
    (bad / "manifest.json").write_text("{")
    rc, out, _ = _cli(capsys, "verify", bad, FIXTURES / "runc-quota")
    assert rc == 2 and "malformed manifest JSON" in out and "runc-quota: sound" in out
