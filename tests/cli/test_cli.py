"""The command line as a user meets it: help, listings, and one-line errors with exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nodetape import schemas
from nodetape.tape.format import new_manifest
from nodetape.tape.writer import TapeWriter

COMMANDS = ["record", "info", "query", "sql", "replay", "report", "doctor", "demo", "schema"]


def nodetape(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nodetape.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120, **kw)


@pytest.fixture(scope="module")
def tape(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "tape"
    w = TapeWriter(path, new_manifest(host={"hostname": "h"}, clock_pair=(0, 10**18), cgroup={"mode": "v2"},
                                      options={}, schema_version=schemas.SCHEMA_VERSION))
    w.append("psi_samples", schemas.batch("psi_samples", {"ts_ns": [1, 2], "scope": ["system"] * 2,
                                                          "resource": ["cpu", "io"]}))
    w.close(end_ns=3)
    return path


def test_help_lists_all_nine_commands():
    r = nodetape("--help")
    assert r.returncode == 0
    for c in COMMANDS:
        assert f" {c} " in r.stdout, c


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_text(command):
    r = nodetape(command, "--help")
    assert r.returncode == 0 and len(r.stdout) > 200


def test_schema_lists_14_tables():
    r = nodetape("schema", "--format", "csv")
    assert r.returncode == 0
    names = [line.split(",")[0] for line in r.stdout.splitlines()[1:]]
    assert names == list(schemas.TABLE_NAMES) and len(names) == 14


def test_schema_table_shows_units():
    r = nodetape("schema", "cgroup_samples", "--format", "csv")
    assert r.returncode == 0
    assert "throttled_usec,int64,usec" in r.stdout
    assert "memory_max,int64,bytes" in r.stdout


def test_sql_formats(tape):
    r = nodetape("sql", tape, "SELECT resource FROM psi_samples ORDER BY ts_ns", "--format", "jsonl")
    assert r.stdout.splitlines() == ['{"resource":"cpu"}', '{"resource":"io"}']
    r = nodetape("sql", tape, "SELECT resource FROM psi_samples ORDER BY ts_ns", "--format", "json")
    assert r.stdout.startswith("[") and '"io"' in r.stdout
    r = nodetape("sql", tape, "SELECT count(*) AS n FROM psi_samples", "--format", "csv")
    assert r.stdout == "n\n2\n"


def test_query_list_needs_no_tape():
    r = nodetape("query", "--list")
    assert r.returncode == 0 and "tables_overview" in r.stdout


def test_parquet_output_to_file(tape, tmp_path):
    import pyarrow.parquet as pq

    out = tmp_path / "o.parquet"
    r = nodetape("sql", tape, "SELECT * FROM psi_samples", "--format", "parquet", "--output", out)
    assert r.returncode == 0 and pq.read_table(out).num_rows == 2


def _bad_cases(tape, tmp_path):
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "manifest.json").write_text((tape / "manifest.json").read_text())
    (corrupt / "psi_samples").mkdir()
    (corrupt / "psi_samples" / "part-000000.parquet").write_bytes(b"garbage")
    nomanifest = tmp_path / "empty"
    nomanifest.mkdir()
    return {
        "missing tape": (["info", tmp_path / "nope"], "nope"),
        "no manifest": (["sql", nomanifest, "SELECT 1"], "manifest.json"),
        "corrupt part": (["info", corrupt], "part-000000.parquet"),
        "unknown query": (["query", tape, "no_such_query"], "no_such_query"),
        "bad sql": (["sql", tape, "SELEC 1"], "SQL error"),
        "unknown table in sql": (["sql", tape, "SELECT * FROM nope"], "nope"),
        "bad option": (["query", tape, "tables_overview", "--bogus"], "--bogus"),
        "bad format": (["sql", tape, "SELECT 1", "--format", "xml"], "--format"),
        "bad param": (["query", tape, "tables_overview", "--param", "x"], "--param"),
        "unknown param": (["query", tape, "tables_overview", "--param", "x=1"], "x"),
        "bad duration": (["record", tmp_path / "r", "--duration", "soon"], "--duration"),
        "unknown source": (["record", tmp_path / "r2", "--sources", "psi,bogus"], "bogus"),
        "bad cgroup root": (["record", tmp_path / "r3", "--cgroup-root", tmp_path / "no"], "--cgroup-root"),
        "unknown schema table": (["schema", "nope"], "nope"),
        "missing argument": (["sql"], "Missing argument"),
        "empty sql": (["sql", tape, "  "], "empty"),
        "zero window": (["query", tape, "throttle_timeline", "--param", "window=0s"], "window=0s"),
        "bad psi trigger": (["record", tmp_path / "r4", "--psi-trigger", "memory some 5ms/100ms"], "--psi-trigger"),
        "unwritable html": (["report", tape, "--html", tmp_path / "no" / "r.html"], "--html"),
        "not an integer param": (["query", tape, "syscall_profile", "--param", "top=abc"], "--param top=abc"),
        "huge integer param": (["query", tape, "process_tree", "--param", "root=1" + "0" * 30], "--param root="),
    }


@pytest.mark.parametrize("case", ["missing tape", "no manifest", "corrupt part", "unknown query", "bad sql",
                                  "unknown table in sql", "bad option", "bad format", "bad param", "unknown param",
                                  "bad duration", "unknown source", "bad cgroup root", "unknown schema table",
                                  "missing argument", "empty sql", "zero window", "bad psi trigger",
                                  "unwritable html", "not an integer param", "huge integer param"])
def test_bad_input_is_one_line_and_exit_2(tape, tmp_path, case):
    args, needle = _bad_cases(tape, tmp_path)[case]
    r = nodetape(*args)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert needle in lines[0]
    assert lines[0].startswith("nodetape: error: ")
