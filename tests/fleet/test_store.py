"""The fleet store: layout, push (atomic, idempotent, resumable) and queries over a store (docs/fleet.md)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nodetape.core.errors import UserError
from nodetape.store import layout
from nodetape.store.push import push, push_tape
from nodetape.store.reader import is_store, open_store, parse_wall, select
from nodetape.store.storefs import blake2b_local, open_fs
from nodetape.tape.reader import connect, open_tapes

REPO = Path(__file__).resolve().parents[2]
FIXTURES = sorted((REPO / "fixtures" / "tapes").iterdir())


def _rows(tapes, sql, params=None):
    con = connect(tapes)
    try:
        from nodetape.queries.macros import register
        register(con)
    except ImportError:
        pass
    return sorted(map(repr, con.execute(sql, params or {}).fetchall()))


def _store_files(store: Path):
    return sorted(p.relative_to(store).as_posix() for p in store.rglob("*") if p.is_file())


# -- layout ------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["", "..", "../x", "a/b", ".hidden", "-x", "a" * 129, "a b", "x\0y", None, 5])
def test_names_from_tapes_must_be_plain(bad):
    with pytest.raises(UserError):
        layout.check_name("host", bad)


def test_part_path_and_manifest_path():
    assert layout.part_path("cgroup_events", "node-1", "2026-12-06", "t0123", 7) == \
        "cgroup_events/host=node-1/date=2026-12-06/t0123-000007.parquet"
    assert layout.manifest_path("node-1", "t0123") == "_tapes/host=node-1/t0123.json"
    assert layout.parse_part_file("t0123-000007.parquet") == ("t0123", 7)
    assert layout.parse_part_file(".t0123-000007.parquet.123-abc.partial") is None
    with pytest.raises(UserError):
        layout.part_path("cgroup_events", "node-1", "2026-12-06/../..", "t0123", 7)


def test_tape_id_is_stable_and_derived_from_host_boot_start():
    m = json.loads((FIXTURES[0] / "manifest.json").read_text())
    assert layout.tape_id_of(m) == layout.tape_id_of(json.loads(json.dumps(m)))
    other = dict(m, start_ns=m["start_ns"] + 1)
    assert layout.tape_id_of(other) != layout.tape_id_of(m)
    assert layout.tape_id_of(dict(m, tape_id="given-1")) == "given-1"
    with pytest.raises(UserError):
        layout.tape_id_of(dict(m, tape_id="../../etc"))


def test_date_uses_the_clock_pair_in_effect():
    # boottime 100 s; offset puts it at 2026-12-05T23:59:59 UTC, a later pair moves it past midnight
    midnight = 1_796_515_200 * 10**9  # 2026-12-06T00:00:00Z
    pairs = [(0, midnight - 101 * 10**9), (100 * 10**9, midnight - 99 * 10**9)]
    assert layout.wall_date(50 * 10**9, pairs) == "2026-12-05"
    assert layout.wall_date(100 * 10**9, pairs) == "2026-12-06"


# -- push --------------------------------------------------------------------
def test_push_then_store_answers_like_the_tapes(tmp_path):
    store = tmp_path / "store"
    st = push(FIXTURES, str(store), stream=None)
    assert st.parts_pushed > 0 and not st.conflicts
    assert is_store(store)
    tapes = open_store(store)
    assert len(tapes) == len(FIXTURES)
    from nodetape.queries import catalog

    for name, q in catalog().items():
        p = q.bind({})
        assert _rows(tapes, q.sql, p) == _rows(open_tapes(FIXTURES), q.sql, p), name


def test_push_is_idempotent_and_files_are_whole_copies(tmp_path):
    store = tmp_path / "store"
    first = push(FIXTURES[:1], str(store), stream=None)
    before = {f: (store / f).stat().st_mtime_ns for f in _store_files(store) if f.endswith(".parquet")}
    again = push(FIXTURES[:1], str(store), stream=None)
    assert again.parts_pushed == 0 and again.parts_skipped == first.parts_pushed
    after = {f: (store / f).stat().st_mtime_ns for f in _store_files(store) if f.endswith(".parquet")}
    assert before == after  # nothing rewritten
    m = json.loads(next((store / "_tapes").rglob("*.json")).read_text())
    for table, parts in m["store"]["parts"].items():
        for name, rec in parts.items():
            assert blake2b_local(FIXTURES[0] / table / name)[0] == rec["blake2b"]
            assert blake2b_local(store / rec["file"])[0] == rec["blake2b"]


def test_a_different_part_under_the_same_name_is_a_conflict_never_overwritten(tmp_path):
    store = tmp_path / "store"
    push(FIXTURES[:1], str(store), stream=None)
    victim = sorted(store.rglob("*.parquet"))[0]
    victim.write_bytes(b"not this part")
    st = push(FIXTURES[:1], str(store), stream=None)
    assert len(st.conflicts) == 1 and str(victim) in st.conflicts[0]
    assert victim.read_bytes() == b"not this part"


def test_host_label_and_hosts_glob(tmp_path):
    store = tmp_path / "store"
    for i, tape in enumerate(FIXTURES):
        push([tape], str(store), host=f"node-{i}", stream=None)
    assert sorted(t.host for t in open_store(store)) == [f"node-{i}" for i in range(len(FIXTURES))]
    assert [t.host for t in open_store(store, hosts="node-1")] == ["node-1"]
    rows = _rows(open_store(store, hosts="node-[01]"), "SELECT DISTINCT host FROM cgroup_events")
    assert rows == ["('node-0',)", "('node-1',)"]
    with pytest.raises(UserError, match="no tapes matching"):
        open_store(store, hosts="elsewhere-*")


def test_time_window_prunes_parts(tmp_path):
    store = tmp_path / "store"
    push(FIXTURES, str(store), stream=None)
    everything = select(store)
    m = everything.tapes[0].manifest
    start_wall = m["start_ns"] + m["clock"]["offset_ns"]
    end_wall = (m["end_ns"] or m["start_ns"]) + m["clock"]["offset_ns"]
    one = select(store, start_wall_ns=start_wall, end_wall_ns=end_wall)
    assert one.pruned_parts > 0
    assert len(one.tapes) < len(everything.tapes)
    assert any(t.manifest["start_ns"] == m["start_ns"] for t in one.tapes)
    none = select(store, start_wall_ns=parse_wall("2001-01-01T00:00:00Z", "--from"),
                  end_wall_ns=parse_wall("2001-01-02T00:00:00Z", "--to"))
    assert none.tapes == []


def test_parts_without_a_manifest_are_left_out(tmp_path):
    store = tmp_path / "store"
    push(FIXTURES[:1], str(store), stream=None)
    for f in (store / "_tapes").rglob("*.json"):
        f.unlink()
    push(FIXTURES[1:2], str(store), stream=None)
    sel = select(store)
    assert len(sel.tapes) == 1 and sel.orphan_parts > 0


def test_damaged_store_manifest_is_one_error_naming_it(tmp_path):
    store = tmp_path / "store"
    push(FIXTURES[:1], str(store), stream=None)
    mf = next((store / "_tapes").rglob("*.json"))
    mf.write_text('{"clock": {"offset_ns": "soon"}, "host": {}}')
    with pytest.raises(UserError, match=str(mf.name)):
        open_store(store)


_KILLED_PUSH = """
import sys
from pathlib import Path
from nodetape.store.push import push_tape
from nodetape.store.storefs import open_fs
store = open_fs(sys.argv[1], create=True)
for i in range(40):
    for tape in sys.argv[2:]:
        push_tape(Path(tape), store, host=f"node-{i}")
"""


def test_push_killed_midway_then_rerun_leaves_no_duplicate_and_no_partial(tmp_path):
    store = tmp_path / "store"
    tapes = [str(t) for t in FIXTURES[:2]]
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_PUSH, str(store), *tapes])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(store.rglob("*.parquet"))) >= 60:
            break
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # what a SIGKILL during a write leaves: a hidden temporary of a dead process
    some = sorted(store.rglob("*.parquet"))[0]
    stale = some.with_name(f".{some.name}.999999999-dead00.partial")
    stale.write_bytes(b"half a part")
    some.unlink()
    # resume: the same pushes again, to completion
    subprocess.run([sys.executable, "-c", _KILLED_PUSH, str(store), *tapes], check=True)
    files = _store_files(store)
    assert not [f for f in files if f.endswith(".partial") or "/." in f]
    parts = [f for f in files if f.endswith(".parquet")]
    n_parts = sum(len(list(Path(t).glob("*/part-*.parquet"))) for t in tapes)
    assert len(parts) == len(set(parts)) == 40 * n_parts
    for t in open_store(store):  # every part whole: its checksum is the pushed one
        for table, recs in t.manifest["store"]["parts"].items():
            for rec in recs.values():
                assert blake2b_local(store / rec["file"])[0] == rec["blake2b"]
