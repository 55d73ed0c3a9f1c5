"""Bad input everywhere: fuzzed manifests and parts; clock pairs across an NTP step; triggers; sizes."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodetape import schemas
from nodetape.core.errors import TapeError
from nodetape.info import render, summary
from nodetape.tape.format import CLOCK_STEP_NS, MAX_CLOCK_PAIRS, add_clock_pair, new_manifest
from nodetape.recorder.triggers import fired, parse_trigger
from nodetape.core.sizes import parse_size
from nodetape.tape.reader import connect, open_tape, open_tapes
from nodetape.tape.writer import TapeWriter

FUZZ = settings(max_examples=int(os.environ.get("NODETAPE_FUZZ_EXAMPLES", "60")), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _manifest(offset=10**18):
    return new_manifest(host={"hostname": "h"}, clock_pair=(0, offset), cgroup={"mode": "v2"},
                        options={}, schema_version=schemas.SCHEMA_VERSION)


def _psi(ts, scope="system", resource="cpu", avg=1.0):
    n = len(ts)
    return schemas.batch("psi_samples", {"ts_ns": ts, "scope": [scope] * n, "resource": [resource] * n,
                                         "some_avg10": [avg] * n, "some_total_usec": list(range(n))})


@pytest.fixture(scope="module")
def good_tape(tmp_path_factory):
    tape = tmp_path_factory.mktemp("good") / "t"
    w = TapeWriter(tape, _manifest())
    w.append("psi_samples", _psi([1, 2, 3]))
    w.flush()
    w.append("psi_samples", _psi([4]))
    w.close(end_ns=5)
    return tape


def _open_fully(tape):
    """Everything a user command does with a tape, short of running a query."""
    t = open_tape(tape)
    render(t)
    summary(t)
    connect([t])
    return t


def _mutate(value, data):
    """Replace one node of a JSON document by a random JSON value."""
    junk = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                        max_leaves=5)
    if isinstance(value, dict) and value and data.draw(st.booleans()):
        k = data.draw(st.sampled_from(sorted(value)))
        if data.draw(st.integers(0, 4)) == 0:
            return {kk: vv for kk, vv in value.items() if kk != k}
        return {**value, k: _mutate(value[k], data)}
    if isinstance(value, list) and value and data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(value) - 1))
        return value[:i] + [_mutate(value[i], data)] + value[i + 1:]
    return data.draw(junk)


@FUZZ
@given(data=st.data())
def test_fuzzed_manifest_json_is_a_clean_error_or_opens(good_tape, tmp_path_factory, data):
    tape = tmp_path_factory.mktemp("fz") / "t"
    shutil.copytree(good_tape, tape)
    m = json.loads((tape / "manifest.json").read_text())
    (tape / "manifest.json").write_text(json.dumps(_mutate(m, data)))
    try:
        _open_fully(tape)
    except TapeError as e:
        assert str(tape) in str(e) and "\n" not in str(e)


@FUZZ
@given(raw=st.binary(max_size=400), cut=st.integers(0, 5000))
def test_fuzzed_manifest_bytes_are_a_clean_error_or_open(good_tape, tmp_path_factory, raw, cut):
    tape = tmp_path_factory.mktemp("fb") / "t"
    shutil.copytree(good_tape, tape)
    text = (tape / "manifest.json").read_bytes()
    (tape / "manifest.json").write_bytes(text[:cut] + raw)
    try:
        _open_fully(tape)
    except TapeError as e:
        assert "manifest.json" in str(e) and "\n" not in str(e)


@FUZZ
@given(data=st.data())
def test_fuzzed_parts_are_a_clean_error_or_open(good_tape, tmp_path_factory, data):
    import duckdb

    tape = tmp_path_factory.mktemp("fp") / "t"
    shutil.copytree(good_tape, tape)
    part = tape / "psi_samples" / "part-000000.parquet"
    b = bytearray(part.read_bytes())
    how = data.draw(st.sampled_from(["truncate", "flip", "random", "splice"]))
    if how == "truncate":
        b = b[: data.draw(st.integers(0, len(b) - 1))]
    elif how == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            b[data.draw(st.integers(0, len(b) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    elif how == "random":
        b = bytearray(data.draw(st.binary(max_size=2000)))
    else:
        i = data.draw(st.integers(0, len(b)))
        b[i:i] = data.draw(st.binary(min_size=1, max_size=64))
    part.write_bytes(bytes(b))
    try:
        t = _open_fully(tape)
    except TapeError as e:
        assert str(part) in str(e) and "\n" not in str(e)
        return
    # the metadata held: a damaged page may still fail the scan, as a DuckDB error
    # (which `nodetape sql` turns into one line), never anything else
    try:
        connect([t]).execute("SELECT * FROM psi_samples").fetchall()
    except duckdb.Error:
        pass


def test_clock_pairs_follow_an_ntp_step(tmp_path):
    tape = tmp_path / "t"
    m = _manifest(offset=1_000_000_000_000)
    # at boottime 1000 the wall clock stepped back by 5 s
    assert add_clock_pair(m, (1000, 1000 + 1_000_000_000_000 - 5_000_000_000))
    w = TapeWriter(tape, m)
    w.append("psi_samples", _psi([500, 999, 1000, 2000]))
    w.close(end_ns=3000)
    con = connect(open_tapes([tape]))
    rows = con.execute("SELECT ts_ns, epoch_us(ts) FROM psi_samples ORDER BY ts_ns").fetchall()
    assert rows == [(500, (500 + 10**12) // 1000), (999, (999 + 10**12) // 1000),
                    (1000, (1000 + 10**12 - 5 * 10**9) // 1000), (2000, (2000 + 10**12 - 5 * 10**9) // 1000)]
    t = open_tape(tape)
    assert t.offset_at(0) == 10**12 and t.offset_at(1500) == 10**12 - 5 * 10**9


def test_clock_pairs_stay_few():
    m = _manifest(offset=0)
    assert not add_clock_pair(m, (10, 10 + CLOCK_STEP_NS // 2))  # no step: nothing stored
    for i in range(1, 500):
        add_clock_pair(m, (i * 10**9, i * 10**9 + i * 2 * CLOCK_STEP_NS))
    snaps = m["clock"]["snapshots"]
    assert len(snaps) == MAX_CLOCK_PAIRS and snaps[0] == [0, 0] and snaps[-1][0] == 499 * 10**9
    # retention: pairs before the window go, except the one that dates its start
    add_clock_pair(m, (500 * 10**9, 500 * 10**9), keep_from_ns=490 * 10**9 + 1)
    snaps = m["clock"]["snapshots"]
    assert snaps[0][0] <= 490 * 10**9 + 1 < snaps[1][0]


@pytest.mark.parametrize("spec,label", [
    ("psi memory some > 20%", "psi-memory-some-avg10"),
    ("PSI io full avg60 >= 5", "psi-io-full-avg60"),
    ("oom_kill", "oom_kill"),
])
def test_trigger_specs(spec, label):
    assert parse_trigger(spec).label == label


@pytest.mark.parametrize("bad", ["psi memory > 20%", "psi disk some > 1", "oom kill", "", "psi cpu some < 3"])
def test_bad_trigger_specs(bad):
    with pytest.raises(ValueError, match="bad trigger"):
        parse_trigger(bad)


def test_triggers_fire_on_system_rows_only():
    t = parse_trigger("psi memory some > 20%")
    assert not fired(t, "psi_samples", _psi([1], resource="memory", avg=20.0))
    assert fired(t, "psi_samples", _psi([1], resource="memory", avg=20.5))
    assert not fired(t, "psi_samples", _psi([1], scope="/kubepods", resource="memory", avg=90.0))
    assert not fired(t, "psi_samples", _psi([1], resource="cpu", avg=90.0))
    oom = parse_trigger("oom_kill")
    ev = schemas.batch("cgroup_events", {"ts_ns": [1, 2], "source": ["inotify"] * 2, "kind": ["created", "oom_kill"],
                                         "hierarchy": ["memory"] * 2, "cgroup_path": ["/a", "/a"]})
    assert fired(oom, "cgroup_events", ev) and not fired(oom, "cgroup_events", ev.slice(0, 1))


@pytest.mark.parametrize("text,n", [("500M", 500 << 20), ("2G", 2 << 30), ("64k", 64 << 10), ("1.5MiB", 3 << 19),
                                    ("100", 100)])
def test_sizes(text, n):
    assert parse_size(text) == n


def test_bad_size():
    with pytest.raises(ValueError, match="bad size"):
        parse_size("lots")
