"""`nodetape compact STORE`: the same rows before and after, idempotent, crash-safe (docs/fleet.md).

The fixture tapes (real recordings) are pushed into a directory store under two host
labels; every table's rows and every named query's rows are read before and after
compaction and compared. The crash tests kill a real `nodetape compact` process with
SIGKILL at each step of a compaction (store/compact.py `_step`), then check that the
store gives the same rows, and that a second run finishes the job.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import nodetape
from nodetape.cli import run
from nodetape.schemas import TABLES
from nodetape.store import compacted as cz
from nodetape.store.compact import KILL_AT, compact
from nodetape.store.push import push

REPO = Path(__file__).resolve().parents[2]
FIXTURES = sorted((REPO / "fixtures" / "tapes").iterdir())


def _store(path: Path) -> Path:
    push(FIXTURES, str(path), stream=None)
    push([FIXTURES[0]], str(path), host="node-b", stream=None)
    return path


def _rows(store: Path, **narrow) -> dict:
    """Every table's rows (sorted) and every named query's rows (in the query's order)."""
    from nodetape.queries import catalog

    out = {}
    with nodetape.open(str(store), **narrow) as db:
        for t in TABLES:
            out[t.name] = sorted(map(repr, db.sql(f'SELECT * FROM "{t.name}"').to_pylist()))
        for name in catalog():
            out[f"query {name}"] = list(map(repr, db.query(name).to_pylist()))
    return out


def _loose_parts(store: Path) -> list[str]:
    return sorted(p.relative_to(store).as_posix() for p in store.glob("*/host=*/date=*/*.parquet"))


def _compacted_files(store: Path) -> list[Path]:
    return sorted(store.glob(f"*/{cz.COMPACTED_DIR}/date=*/*"))


@pytest.fixture(scope="module")
def before(tmp_path_factory):
    store = _store(tmp_path_factory.mktemp("ref") / "store")
    return {"all": _rows(store), "node-b": _rows(store, hosts="node-b"),
            "window": _rows(store, from_="2026-12-06T00:00:00Z", to="2026-12-06T23:59:59Z")}


def test_compaction_keeps_every_row_and_removes_the_per_host_parts(tmp_path, before):
    store = _store(tmp_path / "store")
    n_parts = len(_loose_parts(store))
    st = compact(str(store))
    assert st.parts == n_parts and st.removed == n_parts and st.rows > 0
    assert _loose_parts(store) == []
    assert any(p.name == cz.INDEX for p in _compacted_files(store))
    assert _rows(store) == before["all"]
    assert _rows(store, hosts="node-b") == before["node-b"]
    assert _rows(store, from_="2026-12-06T00:00:00Z", to="2026-12-06T23:59:59Z") == before["window"]
    again = compact(str(store))
    assert again.parts == 0 and again.files == 0


def test_compacted_rows_are_sorted_by_host_then_time_and_name_their_part(tmp_path):
    import pyarrow.parquet as pq

    store = _store(tmp_path / "store")
    compact(str(store), "cgroup_samples")
    index = json.loads(next(store.glob(f"cgroup_samples/{cz.COMPACTED_DIR}/date=*/{cz.INDEX}")).read_text())
    data = pq.read_table(store / "cgroup_samples" / cz.COMPACTED_DIR / f"date={index['date']}" / index["files"][0]["file"])
    keys = list(zip(data.column(cz.HOST_COL).to_pylist(), data.column("ts_ns").to_pylist()))
    assert keys == sorted(keys)
    by_src = {rec["src"]: rec for rec in index["parts"].values()}
    assert set(data.column(cz.SRC_COL).to_pylist()) == set(by_src)
    assert {rel: cz.src_id(rel) for rel in index["parts"]} == {rel: r["src"] for rel, r in index["parts"].items()}
    assert _loose_parts(store) and all(not p.startswith("cgroup_samples/") for p in _loose_parts(store))


def test_push_again_after_compaction_is_a_no_op_and_new_parts_join_later(tmp_path, before):
    store = tmp_path / "store"
    push(FIXTURES[:2], str(store), stream=None)
    compact(str(store))
    st = push(FIXTURES[:2], str(store), stream=None)
    assert st.parts_pushed == 0 and st.parts_skipped > 0 and not st.conflicts
    assert _loose_parts(store) == []
    push(FIXTURES[2:], str(store), stream=None)  # new parts beside compacted ones: both read
    push([FIXTURES[0]], str(store), host="node-b", stream=None)
    assert _loose_parts(store)
    assert _rows(store) == before["all"]
    compact(str(store))
    assert _loose_parts(store) == []
    assert _rows(store) == before["all"]
    indexes = [json.loads(p.read_text()) for p in store.glob(f"*/{cz.COMPACTED_DIR}/date=*/{cz.INDEX}")]
    assert max(len(i["files"]) for i in indexes) == 2  # a second run adds a file; the first one's stays


@pytest.mark.parametrize("step", ["writing", "written", "renamed", "committed", "removing"])
def test_sigkill_at_any_step_leaves_the_same_rows(tmp_path, before, step):
    store = _store(tmp_path / "store")
    env = {**os.environ, KILL_AT: step}
    r = subprocess.run([sys.executable, "-m", "nodetape.cli", "compact", str(store)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert _rows(store) == before["all"]
    assert run(["compact", "-q", str(store)]) == 0
    assert _loose_parts(store) == []
    assert _rows(store) == before["all"]
    for p in _compacted_files(store):  # no temporary and no unnamed file is left
        if p.name != cz.INDEX:
            index = json.loads((p.parent / cz.INDEX).read_text())
            assert p.name in {f["file"] for f in index["files"]}, p


def _no_bytes(out: str) -> str:
    """info's part sizes are those of the parts it reads: over a compacted store, parts written back"""
    import re

    return re.sub(r'"bytes": \d+', '"bytes": N', out)


def test_replay_info_and_report_over_a_compacted_store(tmp_path, capsys):
    store = _store(tmp_path / "store")
    argvs = [["replay", str(store), "--max", "--tables", "cgroup_events,processes"],
             ["replay", str(store), "--hosts", "node-b", "--max"],
             ["info", str(store), "--json"], ["report", str(store)]]
    outs = []
    for argv in argvs:
        assert run(argv) == 0, argv
        outs.append(capsys.readouterr().out)
    assert run(["compact", "-q", str(store)]) == 0
    assert _loose_parts(store) == []
    for argv, out in zip(argvs, outs):
        assert run(argv) == 0, argv
        assert _no_bytes(capsys.readouterr().out) == _no_bytes(out), argv
    assert outs[0].count("\n") > 100


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    store = _store(tmp_path / "store")
    capsys.readouterr()
    cases = [["compact", "s3://bucket/fleet"], ["compact", str(store), "--table", "nope"],
             ["compact", str(tmp_path / "missing")], ["compact", str(FIXTURES[0])]]
    for argv in cases:
        assert run(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("nodetape: error: ") and err.count("\n") == 1, (argv, err)
    assert "directory store only" in (run(["compact", "gs://b/f"]), capsys.readouterr().err)[1]
    assert run(["compact", "-q", str(store)]) == 0
    damaged = next(store.glob(f"processes/{cz.COMPACTED_DIR}/date=*/c*.parquet"))
    damaged.write_bytes(damaged.read_bytes()[:-100])
    for argv in (["query", str(store), "pod_births"], ["replay", str(store), "--max"]):
        capsys.readouterr()
        assert run(argv) == 2, argv
        err = capsys.readouterr().err
        assert str(damaged) in err and err.count("\n") == 1, (argv, err)
    index = next(store.glob(f"cgroup_events/{cz.COMPACTED_DIR}/date=*/{cz.INDEX}"))
    good = json.loads(index.read_text())
    for bad in ("{not json", json.dumps({**good, "parts": {"x": 5}}), json.dumps({**good, "format": 99})):
        index.write_text(bad)
        capsys.readouterr()
        assert run(["query", str(store), "pod_births"]) == 2
        err = capsys.readouterr().err
        assert str(index) in err and err.count("\n") == 1


class _Terminal:
    """A stream that says it is a terminal, keeping what was written."""

    def __init__(self):
        self.text = ""

    def isatty(self) -> bool:
        return True

    def write(self, s: str) -> None:
        self.text += s

    def flush(self) -> None:
        pass


def test_a_terminal_sees_one_progress_line_per_table_and_date_then_the_summary(tmp_path):
    from nodetape.store.compact import run as run_compact

    store = _store(tmp_path / "store")
    term = _Terminal()
    st = run_compact(str(store), "cgroup_events", stream=term)
    lines = term.text.split("\r")
    assert any(line.startswith("\x1b[Kcompact cgroup_events date=") for line in lines)
    assert lines[-1].startswith(f"\x1b[Kcompacted {st.parts} parts")
    assert st.parts > 0
