"""Hostile manifests: wrong types, absurd numbers, climbing names. One loader validates every field, so
every command that opens a tape answers exit 2 with one line naming the manifest and the field."""

from __future__ import annotations

import pytest
from hostile_tapes import copy_fixture, edit_manifest

from nodetape.cli import run


def _set(path: str, value):
    def edit(m):
        *parents, last = [k.replace("%2F", "/") for k in path.split("/")]
        d = m
        for k in parents:
            d = d[k]
        d[last] = value
    return edit


CASES = [
    ("cgroup/root", 5, "cgroup.root"),
    ("cgroup/hierarchies", ["cpu"], "cgroup.hierarchies"),
    ("cgroup/hierarchies", {"..": "/sys/fs/cgroup/cpu"}, "cgroup.hierarchies key '..'"),
    ("cgroup/hierarchies", {"cpu": "/sys/fs/cgroup/../../../etc"}, "cgroup.hierarchies.cpu"),
    ("cgroup/hierarchies", {"cpu": "relative/cpu"}, "cgroup.hierarchies.cpu"),
    ("cgroup/hierarchies", {"cpu": "/sys/fs/cgroup/cpu\x00x"}, "cgroup.hierarchies.cpu"),
    ("cgroup/controllers", {"cpu": "../cpu"}, "cgroup.controllers.cpu"),
    ("clock/offset_ns", 10**30, "clock.offset_ns"),
    ("clock/offset_ns", "0", "clock.offset_ns"),
    ("start_ns", 2**80, "start_ns"),
    ("end_ns", -1, "end_ns"),
    ("clock/snapshots", [[i, 10**18 + i] for i in range(100_000)], "clock.snapshots"),
    ("clock/snapshots", [[0, 10**30]], "clock.snapshots[0][1]"),
    ("tables/cgroup_events/parts", ["../../../x.parquet"], "tables.cgroup_events.parts[0]"),
    ("tables/cgroup_events/rows", 1.5, "tables.cgroup_events.rows"),
    ("tables/cgroup_events/first_part", 10**30, "tables.cgroup_events.first_part"),
    ("tables/..%2Fx", {}, "tables key"),
    ("sources", [], "sources"),
    ("sources/cgroup/events", "many", "sources.cgroup.events"),
    ("host", "vm", "host"),
    ("closed", "yes", "closed"),
    ("recorder/pid", -1, "recorder.pid"),
    ("schema_version", 1, "schema_version"),
]


@pytest.mark.parametrize("path,value,field", CASES, ids=[f"{c[0]}={str(c[1])[:20]}" for c in CASES])
def test_bad_manifest_field_is_exit_2_naming_it(tmp_path, capsys, path, value, field):
    tape = copy_fixture(tmp_path)
    edit_manifest(tape, _set(path, value))
    for cmd in (["info"], ["report"], ["replay", "--max", "--from", "2026-11-27T05:51:46Z"],
                ["query", "{tape}", "pod_births"], ["snapshot", "{tape}", str(tmp_path / "snap")]):
        args = [a.replace("{tape}", str(tape)) for a in cmd]
        if "{tape}" not in cmd:
            args.insert(1, str(tape))
        rc = run(args)
        _, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1, (cmd, err)
        assert f"{tape}/manifest.json" in lines[0] and field in lines[0], (cmd, err)
    assert not (tmp_path / "snap").exists()


def test_a_newer_format_is_refused_by_name(tmp_path, capsys):
    tape = copy_fixture(tmp_path)
    edit_manifest(tape, _set("format_version", 99))
    assert run(["info", str(tape)]) == 2
    assert "tape format 99 is newer than this nodetape reads" in capsys.readouterr().err


def test_info_escapes_control_characters_from_the_tape(tmp_path, capsys):
    tape = copy_fixture(tmp_path)

    def edit(m):
        m["host"]["hostname"] = "evil\x1b]0;pwned\x07\x1b[2J"
        m["sources"]["cgroup"]["reason"] = "line one\nline two"
        m["sources"]["cgroup"]["status"] = "unavailable"
        m["stop_reason"] = "\x9b31m"
    edit_manifest(tape, edit)
    assert run(["info", str(tape)]) == 0
    out = capsys.readouterr().out
    assert not any(ord(c) < 32 and c != "\n" or 127 <= ord(c) <= 159 for c in out)
    assert "evil\\x1b]0;pwned\\x07\\x1b[2J" in out and "line one\\nline two" in out and "\\x9b31m" in out
