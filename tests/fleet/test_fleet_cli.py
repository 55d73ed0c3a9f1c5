"""`nodetape push` and the store options of query/sql on the command line."""

from __future__ import annotations

import json
from pathlib import Path

from nodetape.cli import run

REPO = Path(__file__).resolve().parents[2]
FIXTURES = sorted((REPO / "fixtures" / "tapes").iterdir())


def test_push_two_hosts_then_query_shows_both(tmp_path, capsys):
    store = tmp_path / "store"
    assert run(["push", str(FIXTURES[0]), str(store), "--host", "node-a"]) == 0
    assert run(["push", str(FIXTURES[3]), str(store), "--host", "node-b"]) == 0
    err = capsys.readouterr().err
    assert "pushed" in err and "already there" in err
    assert run(["query", str(store), "pod_births", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["host"] for r in rows} == {"node-a", "node-b"}
    assert run(["query", str(store), "pod_births", "--hosts", "node-b", "--format", "json"]) == 0
    assert {r["host"] for r in json.loads(capsys.readouterr().out)} == {"node-b"}
    assert run(["sql", str(store), "SELECT count(DISTINCT host) AS n FROM cgroup_samples", "-f", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == "2"


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    store = tmp_path / "store"
    assert run(["push", str(FIXTURES[0]), str(store)]) == 0
    capsys.readouterr()
    cases = [
        ["push", str(FIXTURES[0]), str(store), "--host", "../etc"],
        ["push", str(FIXTURES[0]), str(FIXTURES[1]), str(store), "--host", "x"],
        ["push", str(tmp_path / "missing"), str(store)],
        ["query", str(store), "pod_births", "--from", "yesterday"],
        ["query", str(store), "pod_births", "--engine", "oracle"],
        ["sql", str(FIXTURES[0]), "SELECT 1", "--hosts", "node-*"],
        ["sql", str(store), "SELECT 1", "--hosts", "nobody-*"],
        ["sql", str(store), str(FIXTURES[0]), "SELECT 1"],
    ]
    for argv in cases:
        assert run(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("nodetape: error: ") and err.count("\n") == 1, (argv, err)


def test_replay_and_report_over_a_store(tmp_path, capsys):
    store = tmp_path / "store"
    assert run(["push", str(FIXTURES[0]), str(store), "--host", "node-a", "-q"]) == 0
    assert run(["push", str(FIXTURES[3]), str(store), "--host", "node-b", "-q"]) == 0
    assert run(["replay", str(store), "--hosts", "node-b", "--max", "--tables", "cgroup_events"]) == 0
    lines = capsys.readouterr().out.splitlines()
    m = json.loads((FIXTURES[3] / "manifest.json").read_text())
    assert len(lines) == m["tables"]["cgroup_events"]["rows"]
    assert run(["replay", str(store), "--max", "--tables", "cgroup_events"]) == 0
    both = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert {r["host"] for r in both} == {"node-a", "node-b"}
    assert run(["report", str(store)]) == 0
    out = capsys.readouterr().out
    assert "host node-a" in out and "host node-b" in out
