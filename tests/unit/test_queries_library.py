"""The library object: one tape opening, one DuckDB connection, the same rows as the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import nodetape
import nodetape.api
from nodetape.core.errors import QueryError
from nodetape.output import _plain
from nodetape.queries import catalog, get
from nodetape.schemas import TABLE_NAMES

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "tapes"
TAPES = sorted(p for p in FIXTURES.iterdir() if (p / "manifest.json").is_file())
NAMES = sorted(catalog())


@pytest.fixture(scope="module")
def opened():
    return {t.name: nodetape.open(t) for t in TAPES}


def test_import_nodetape_stays_light():
    code = "import sys, nodetape; print(any(m in sys.modules for m in ('duckdb', 'pyarrow', 'rich', 'nodetape.api')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("name", NAMES)
def test_declared_columns_are_the_output_columns_on_every_fixture_tape(opened, name):
    for tape, db in opened.items():
        assert db.query(name).column_names == get(name).columns, (tape, name)


def test_pod_births_equals_the_cli_rows_and_the_connection_is_reused(monkeypatch):
    tape = FIXTURES / "runc-quota"
    calls = []
    real = nodetape.api.open_tapes
    monkeypatch.setattr(nodetape.api, "open_tapes", lambda paths, **kw: calls.append(paths) or real(paths, **kw))
    db = nodetape.open(tape)
    first = db.query("pod_births")
    con = db.con
    again = db.query("pod_births")
    assert db.con is con and len(calls) == 1
    assert first.equals(again) and first.num_rows > 0
    cli = subprocess.run([sys.executable, "-m", "nodetape.cli", "query", str(tape), "pod_births", "--format", "json"],
                         capture_output=True, text=True, check=True)
    assert json.loads(cli.stdout) == [{k: _plain(v) for k, v in r.items()} for r in first.to_pylist()]


def test_open_takes_paths_or_lists_and_names_hosts(opened):
    a, b = TAPES[0], TAPES[1]
    both = nodetape.open(a, b)
    assert both.paths == nodetape.open([a, b]).paths == [a, b]
    hosts = both.sql("SELECT DISTINCT host FROM cgroup_events ORDER BY host").column("host").to_pylist()
    assert len(hosts) >= 1 and len(both.info()) == 2


def test_tables_overview_lists_every_declared_table_with_rows(opened):
    for tape, db in opened.items():
        got = {(r["host"], r["table_name"]): r["rows"] for r in db.query("tables_overview").to_pylist()}
        for name in TABLE_NAMES:
            for r in db.sql(f"SELECT host, count(*) AS n FROM {name} GROUP BY host").to_pylist():
                assert got.pop((r["host"], name)) == r["n"], (tape, name)
        assert not got, tape


def test_a_table_added_to_the_schemas_appears_in_tables_overview(monkeypatch):
    import dataclasses

    import nodetape.schemas as schemas
    from nodetape.queries import tables_overview_sql

    extra = dataclasses.replace(schemas.TABLES[0], name="brand_new_table")
    monkeypatch.setattr(schemas, "TABLES", (*schemas.TABLES, extra))
    sql = tables_overview_sql()
    assert "'brand_new_table' AS table_name" in sql and all(f"FROM {n} " in sql for n in TABLE_NAMES)


def test_the_bucketing_macros_are_registered_once(opened):
    db = opened["runc-quota"]
    got = db.sql("SELECT bucket_us(2500000, 1000000000) AS w, bucket_end(2000000, 1000000000) AS e").to_pylist()[0]
    assert got["w"] == 2_000_000 and got["e"].isoformat() == "1970-01-01T00:00:03"


def test_events_replays_the_same_tapes(opened):
    db = opened["runc-quota"]
    evs = list(db.events(tables="cgroup_events"))
    n = db.sql("SELECT count(*) AS n FROM cgroup_events").to_pylist()[0]["n"]
    assert len(evs) == n and all(e.table == "cgroup_events" for e in evs)


def test_report_data_from_the_library(opened):
    d = opened["runc-quota"].report()
    assert d.births and d.throttled


@pytest.mark.parametrize("value", ["abc", "1.5", "", "99999999999999999999"])
def test_an_integer_parameter_must_be_an_integer(opened, value):
    with pytest.raises(QueryError, match=r"--param top=.*not an integer"):
        opened["runc-quota"].query("syscall_profile", top=value)
