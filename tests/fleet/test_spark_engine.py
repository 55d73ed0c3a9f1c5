"""`--engine spark` prints exactly what DuckDB prints, for every named query (issue 16).

The fixture tapes (real recordings) are pushed into a directory store; each named
query runs through the CLI on both engines and the CSV output is compared byte for
byte. Spark needs pyspark and a Java runtime (./run installs both); without them
the tests skip, and under NODETAPE_REQUIRE_KERNEL=1 a skip is a failure. One
SparkSession serves the module (starting one costs ~15 s here).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nodetape.cli import run

pytestmark = [pytest.mark.kernel, pytest.mark.spark]

REPO = Path(__file__).resolve().parents[2]
FIXTURES = sorted((REPO / "fixtures" / "tapes").iterdir())


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    pytest.importorskip("pyspark", reason="pyspark is not installed (pip install 'nodetape[fleet]')")
    pytest.importorskip("sqlglot", reason="sqlglot is not installed (pip install 'nodetape[fleet]')")
    if shutil.which("java") is None:
        pytest.skip("no Java runtime (apt-get install openjdk-17-jre-headless)")
    path = tmp_path_factory.mktemp("fleet") / "store"
    assert run(["push", "--quiet", *map(str, FIXTURES), str(path)]) == 0
    return path


def _out(capsys, argv) -> str:
    code = run(argv)
    captured = capsys.readouterr()
    assert code == 0, (argv, captured.err)
    return captured.out


def _query_names():
    from nodetape.queries import catalog

    return list(catalog())


@pytest.mark.parametrize("name", _query_names())
def test_every_named_query_prints_the_same_rows_on_spark(store, capsys, name, monkeypatch):
    monkeypatch.setenv("NODETAPE_SPARK_PARTITIONS", "1")  # tiny data: one shuffle partition is fastest
    duck = _out(capsys, ["query", str(store), name, "--format", "csv"])
    spark = _out(capsys, ["query", str(store), name, "--format", "csv", "--engine", "spark"])
    assert spark == duck
    assert duck.count("\n") >= 1  # a header at least


def test_unsigned_64_bit_ids_survive_spark(tmp_path, capsys, store):
    """cgroup_id is UBIGINT: values past 2^63 compare, join and print alike on both engines."""
    from golden.tapes import S, write_tape

    big = [2**64 - 1, 2**63 + 5, 2**63 - 1, 7]
    write_tape(tmp_path / "t", {
        "cgroup_samples": {"ts_ns": [i * S for i in range(4)], "hierarchy": ["unified"] * 4,
                           "cgroup_path": [f"/c{i}" for i in range(4)], "cgroup_id": big},
        "syscall_counts": {"interval_start_ns": [0] * 4, "interval_end_ns": [S] * 4, "cgroup_id": big,
                           "syscall_nr": [0] * 4, "syscall_name": ["read"] * 4, "count": [1, 2, 3, 4]},
    })
    sql = ("SELECT s.cgroup_id, s.cgroup_path, c.count, s.cgroup_id > 9223372036854775807 AS high, ts "
           "FROM cgroup_samples s JOIN syscall_counts c USING (cgroup_id) ORDER BY s.cgroup_id")
    duck = _out(capsys, ["sql", str(tmp_path / "t"), sql, "--format", "csv"])
    spark = _out(capsys, ["sql", str(tmp_path / "t"), sql, "--format", "csv", "--engine", "spark"])
    assert spark == duck
    assert str(2**64 - 1) in duck and duck.count("\n") == 5


def test_ordered_lists_and_computed_indexes_agree_on_spark(tmp_path, capsys, store):
    """`list(x ORDER BY k)` keeps its order and its NULLs, and `list[expr]` counts from 1, on both engines."""
    from golden.tapes import S, write_tape

    write_tape(tmp_path / "t", {
        "cgroup_samples": {"ts_ns": [i * S for i in range(4)], "hierarchy": ["unified"] * 4,
                           "cgroup_path": ["/c", "/a", "/d", "/b"], "cgroup_id": [3, 1, 4, 2],
                           "pod_uid": ["p3", None, "p4", "p2"]},
    })
    sql = ("SELECT (SELECT list(cgroup_path ORDER BY cgroup_id DESC) FROM cgroup_samples)[w.i] AS path, "
           "(SELECT list(pod_uid ORDER BY cgroup_id) FROM cgroup_samples)[w.i] AS pod, w.i "
           "FROM (SELECT CAST(cgroup_id AS BIGINT) AS i FROM cgroup_samples ORDER BY i) w")
    duck = _out(capsys, ["sql", str(tmp_path / "t"), sql, "--format", "csv"])
    spark = _out(capsys, ["sql", str(tmp_path / "t"), sql, "--format", "csv", "--engine", "spark"])
    assert spark == duck
    assert duck.splitlines()[1:] == ["/d,,1", "/c,p2,2", "/b,p3,3", "/a,p4,4"]


@pytest.fixture(scope="module")
def compacted_store(store, tmp_path_factory):
    """The fixture tapes pushed (one more time under a second host) and compacted (`nodetape compact`)."""
    path = tmp_path_factory.mktemp("fleet-compacted") / "store"
    assert run(["push", "--quiet", *map(str, FIXTURES), str(path)]) == 0
    assert run(["push", "--quiet", str(FIXTURES[0]), str(path), "--host", "node-b"]) == 0
    assert run(["push", "--quiet", str(FIXTURES[1]), str(path), "--host", "node-c"]) == 0
    assert run(["compact", "-q", "--table", "cgroup_events", str(path)]) == 0  # one table, then the others
    assert run(["compact", "-q", str(path)]) == 0
    assert run(["push", "--quiet", str(FIXTURES[2]), str(path), "--host", "node-c"]) == 0  # loose beside compacted
    return path


@pytest.mark.parametrize("name", _query_names())
def test_every_named_query_prints_the_same_rows_on_spark_over_a_compacted_store(compacted_store, capsys, name,
                                                                                  monkeypatch):
    monkeypatch.setenv("NODETAPE_SPARK_PARTITIONS", "1")
    for narrow in ([], ["--hosts", "node-[bc]"]):
        argv = ["query", str(compacted_store), name, "--format", "csv", *narrow]
        duck = _out(capsys, argv)
        assert _out(capsys, [*argv, "--engine", "spark"]) == duck, narrow
