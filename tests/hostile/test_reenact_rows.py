"""`replay --into` on tapes whose rows name paths outside the target: refused whole, exit 2, before any write."""

from __future__ import annotations

import pytest

from replay_util import BOOT0, HYBRID, V2, cg_event, make_tape, rows

from conftest import cli

S = 1_000_000_000
ESCAPES = ["../../../../x", "/../../x", "/a/../../x", "..", "../victim", "/a/\x00/b", "/" + "n" * 256]


def events_tape(path, *evs):
    return make_tape(path, [[("cgroup_events", rows([cg_event(BOOT0 + 1 * S, "created", "/ok")] + list(evs)))]])


def assert_refused(sandbox, capsys, tape, needle, *extra):
    code, err = cli(capsys, "replay", tape, "--into", sandbox.target, "--max", *extra)
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert needle in err, err
    assert not sandbox.target.exists(), "nothing is written before the whole tape is validated"
    assert sandbox.unchanged()
    return err


@pytest.mark.parametrize("bad", ESCAPES)
@pytest.mark.parametrize("kind", ["created", "removed", "populated"])
def test_lifecycle_rows_escaping_are_refused_naming_table_and_seq(sandbox, capsys, tmp_path, bad, kind):
    tape = events_tape(tmp_path / "t", cg_event(BOOT0 + 2 * S, kind, bad))
    err = assert_refused(sandbox, capsys, tape, "cgroup_events seq 1 (part-000000.parquet)")
    assert "cgroup_path" in err and "\x00" not in err


def test_attach_and_oom_kill_rows_are_checked(sandbox, capsys, tmp_path):
    tape = events_tape(tmp_path / "t", cg_event(BOOT0 + 2 * S, "attach", "../../x", pid=1))
    assert_refused(sandbox, capsys, tape, "seq 1")
    ev = cg_event(BOOT0 + 2 * S, "oom_kill", "/../victim", hierarchy="memory")
    ev["count"] = [1]
    tape = events_tape(tmp_path / "t2", ev)
    assert_refused(sandbox, capsys, tape, "seq 1")


def test_sample_rows_are_checked_naming_ts(sandbox, capsys, tmp_path):
    tape = make_tape(tmp_path / "t", [[("cgroup_samples", {
        "ts_ns": [BOOT0 + S, BOOT0 + 2 * S], "hierarchy": ["cpu", "cpu"], "cgroup_path": ["/fine", "../../x"],
        "nr_periods": [1, 2]})]])
    assert_refused(sandbox, capsys, tape, f"cgroup_samples ts_ns {BOOT0 + 2 * S}")


@pytest.mark.parametrize("scope, resource", [("../../x", "cpu"), ("/ok", "../../../x"), ("/ok", "cpu/../../x"),
                                             ("/ok", ".hidden"), ("system", "a\x00b")])
def test_psi_scope_and_resource_are_checked(sandbox, capsys, tmp_path, scope, resource):
    tape = make_tape(tmp_path / "t", [[("psi_samples", {
        "ts_ns": [BOOT0 + S], "scope": [scope], "resource": [resource], "some_avg10": [0.0], "some_avg60": [0.0],
        "some_avg300": [0.0], "some_total_usec": [1]})]], cgroup=V2)
    assert_refused(sandbox, capsys, tape, "psi_samples ts_ns")


def test_an_escaping_row_outside_the_window_does_not_block_the_window(sandbox, capsys, tmp_path):
    tape = events_tape(tmp_path / "t", cg_event(BOOT0 + 30 * S, "created", "../../x"))
    code, err = cli(capsys, "replay", tape, "--into", sandbox.target, "--max", "--to", str(BOOT0 + 10 * S))
    assert code == 0, err
    assert (sandbox.target / "unified" / "ok").is_dir() and sandbox.unchanged()


def test_refused_before_an_out_slice_is_written(sandbox, capsys, tmp_path):
    tape = events_tape(tmp_path / "t", cg_event(BOOT0 + 2 * S, "created", "../../x"))
    assert_refused(sandbox, capsys, tape, "seq 1", "--out", tmp_path / "slice")
    assert not (tmp_path / "slice").exists()


def test_hybrid_fixture_layout_still_reenacts(sandbox, capsys, tmp_path):
    tape = events_tape(tmp_path / "t", cg_event(BOOT0 + 2 * S, "removed", "/ok"))
    code, err = cli(capsys, "replay", tape, "--into", sandbox.target, "--max")
    assert code == 0, err
    assert sorted(p.name for p in sandbox.target.iterdir()) == sorted(HYBRID["hierarchies"])
    assert not (sandbox.target / "unified" / "ok").exists() and sandbox.unchanged()
