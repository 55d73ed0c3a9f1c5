"""Tape writer and reader: parts, manifest, views, bad input."""

import json
import os

import pyarrow as pa
import pytest

from nodetape import schemas
from nodetape.core.errors import TapeError
from nodetape.tape.format import new_manifest
from nodetape.tape.reader import connect, open_tape, open_tapes
from nodetape.tape.writer import TapeWriter


def _manifest(hostname="h1", offset=1_000_000_000_000):
    return new_manifest(host={"hostname": hostname}, clock_pair=(10, 10 + offset), cgroup={"mode": "v2"},
                        options={}, schema_version=schemas.SCHEMA_VERSION)


def _psi(ts, scope="system"):
    n = len(ts)
    return schemas.batch("psi_samples", {"ts_ns": ts, "scope": [scope] * n, "resource": ["cpu"] * n,
                                         "some_avg10": [1.5] * n, "some_total_usec": list(range(n))})


def _write(path, batches, hostname="h1"):
    w = TapeWriter(path, _manifest(hostname))
    for table, b in batches:
        w.append(table, b)
        w.flush()
    w.close(end_ns=1000)
    return w


def test_parts_and_manifest(tmp_path):
    tape = tmp_path / "t"
    _write(tape, [("psi_samples", _psi([100, 200])), ("psi_samples", _psi([300]))])
    m = json.loads((tape / "manifest.json").read_text())
    assert m["closed"] is True and m["end_ns"] == 1000
    assert m["tables"]["psi_samples"]["rows"] == 3
    assert m["tables"]["psi_samples"]["parts"] == ["part-000000.parquet", "part-000001.parquet"]
    assert sorted(os.listdir(tape / "psi_samples")) == m["tables"]["psi_samples"]["parts"]
    assert oct(os.stat(tape).st_mode & 0o777) == "0o700"


def test_views_have_all_tables_ts_and_host(tmp_path):
    tape = tmp_path / "t"
    _write(tape, [("psi_samples", _psi([100, 200]))])
    con = connect(open_tapes([tape]))
    for name in schemas.TABLE_NAMES:
        cols = [r[0] for r in con.execute(f"DESCRIBE {name}").fetchall()]
        assert cols[: len(schemas.table(name).columns)] == schemas.table(name).column_names
        assert "host" in cols
    # ts is the wall time: boottime + the manifest's offset, at microsecond precision
    ts = con.execute("SELECT epoch_us(ts) = (ts_ns + 1000000000000) // 1000, host FROM psi_samples").fetchall()
    assert ts == [(True, "h1")] * 2
    assert con.execute("SELECT count(*) FROM syscall_counts").fetchone() == (0,)


def test_seq_is_per_table_and_monotone(tmp_path):
    tape = tmp_path / "t"
    b = schemas.batch("psi_events", {"ts_ns": [5, 5], "scope": ["system"] * 2, "resource": ["cpu"] * 2,
                                     "kind": ["some"] * 2, "stall_usec": [1, 1], "window_usec": [2, 2]})
    _write(tape, [("psi_events", b), ("psi_events", b)])
    con = connect(open_tapes([tape]))
    assert [r[0] for r in con.execute("SELECT seq FROM psi_events ORDER BY seq").fetchall()] == [0, 1, 2, 3]


def test_several_tapes_union_with_host(tmp_path):
    _write(tmp_path / "a", [("psi_samples", _psi([1]))], hostname="node-a")
    _write(tmp_path / "b", [("psi_samples", _psi([2, 3]))], hostname="node-b")
    con = connect(open_tapes([tmp_path / "a", tmp_path / "b"]))
    assert con.execute("SELECT host, count(*) FROM psi_samples GROUP BY 1 ORDER BY 1").fetchall() == [
        ("node-a", 1), ("node-b", 2)]


def test_temp_files_of_a_killed_writer_are_ignored(tmp_path):
    tape = tmp_path / "t"
    _write(tape, [("psi_samples", _psi([1]))])
    (tape / "psi_samples" / ".part-000001.parquet.tmp").write_bytes(b"half a part")
    assert len(open_tape(tape).parts["psi_samples"]) == 1


@pytest.mark.parametrize("damage,needle", [
    ("missing", "no such tape"),
    ("no_manifest", "missing manifest"),
    ("bad_json", "malformed manifest"),
    ("foreign_json", "not a nodetape manifest"),
    ("newer_schema", "newer than this nodetape reads"),
    ("corrupt_part", "corrupt or truncated Parquet part"),
    ("truncated_part", "corrupt or truncated Parquet part"),
    ("foreign_part", "not a psi_samples part"),
])
def test_bad_tapes_name_the_file(tmp_path, damage, needle):
    tape = tmp_path / "t"
    _write(tape, [("psi_samples", _psi([1, 2]))])
    part = tape / "psi_samples" / "part-000000.parquet"
    mf = tape / "manifest.json"
    # a tape without checksums (format 1): the checks past the recorded size (tests/hostile covers that one)
    m = json.loads(mf.read_text())
    m["tables"]["psi_samples"].pop("checksums")
    mf.write_text(json.dumps(m))
    if damage == "missing":
        tape = tmp_path / "nope"
    elif damage == "no_manifest":
        mf.unlink()
    elif damage == "bad_json":
        mf.write_text("{not json")
    elif damage == "foreign_json":
        mf.write_text('{"hello": 1}')
    elif damage == "newer_schema":
        m = json.loads(mf.read_text())
        m["schema_version"] = "99.0"
        mf.write_text(json.dumps(m))
    elif damage == "corrupt_part":
        part.write_bytes(b"PAR1" + b"\0" * 100)
    elif damage == "truncated_part":
        part.write_bytes(part.read_bytes()[:-20])
    elif damage == "foreign_part":
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"x": [1]}), part)
    with pytest.raises(TapeError) as e:
        open_tape(tape)
    msg = str(e.value)
    assert needle in msg
    assert "\n" not in msg


def test_column_max_on_literal_columns():
    from nodetape.tape.partfile import column_max

    assert column_max(pa.chunked_array([pa.array([3, 9, 1]), pa.array([4])])) == 9
    assert column_max(pa.chunked_array([pa.array([], type=pa.int64()), pa.array([-2, -5])])) == -2
    assert column_max(pa.chunked_array([pa.array([None, 7]), pa.array([6])])) == 7  # a chunk with NULLs
    assert column_max(pa.chunked_array([pa.array([None], type=pa.int64())])) is None
    assert column_max(pa.chunked_array([], type=pa.int64())) is None


def test_by_identity_caches_per_object_not_per_equal_value():
    from nodetape.tape.partfile import by_identity

    cache, built = {}, []
    a, b = pa.schema([("x", pa.int64())]), pa.schema([("x", pa.int64())])
    assert a.equals(b) and a is not b
    for obj, key in ((a, 1), (a, 1), (a, 2), (b, 1)):
        by_identity(cache, obj, key, lambda: built.append((obj is a, key)) or len(built))
    assert built == [(True, 1), (True, 2), (False, 1)]
    assert by_identity(cache, a, 2, lambda: 0) == 2
