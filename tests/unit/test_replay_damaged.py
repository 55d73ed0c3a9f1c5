"""Bad input to replay is exit 2 with one line naming the option or file; a failed --out leaves nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from replay_util import BOOT0, V2, cg_event, make_tape, rows

S = 1_000_000_000


def nodetape(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nodetape.cli", *map(str, args)], capture_output=True, timeout=120)


def one_line_exit_2(r, *needles):
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for n in needles:
        assert str(n) in err, err
    return err


@pytest.fixture(scope="module")
def tape(tmp_path_factory):
    """2,000 rows in one part: several data pages to damage."""
    evs = [cg_event(BOOT0 + i * 1000, "created", f"/kubepods/pod{i % 50}/c{i}", cgroup_id=i) for i in range(2000)]
    return make_tape(tmp_path_factory.mktemp("damaged") / "tape", [[("cgroup_events", rows(evs))]], cgroup=V2)


def part(t):
    return t / "cgroup_events" / "part-000000.parquet"


def damaged_copy(src, dst):
    shutil.copytree(src, dst)
    p = part(dst)
    data = bytearray(p.read_bytes())
    footer = pq.read_metadata(p).serialized_size + 8
    for i in range(8, len(data) - footer - 8, 7):
        data[i] ^= 0x5A
    p.write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize("args, needle", [
    (["--out", "/proc/x"], "--out /proc/x"),
    (["--from", "0001-01-01T00:00:00"], "--from"),
    (["--to", "99999999999999999999999999"], "--to"),
    (["--speed", "1e-300"], "--speed"),
    (["--speed", "nan"], "--speed"),
])
def test_bad_values_exit_2_naming_the_option(tape, args, needle):
    one_line_exit_2(nodetape("replay", tape, *args), needle)


def test_check_on_a_binary_file(tape, tmp_path):
    b = tmp_path / "bin"
    b.write_bytes(bytes(range(256)) * 4)
    one_line_exit_2(nodetape("replay", tape, "--check", b), "--check", b)


@pytest.mark.parametrize("extra", [[], ["--out", "OUT"], ["--into", "INTO", "--max"], ["--from", "+0s", "--out", "OUT"]])
def test_corrupt_data_pages_name_the_part(tape, tmp_path, extra):
    bad = damaged_copy(tape, tmp_path / "bad")
    extra = [str(tmp_path / x) if x in ("OUT", "INTO") else x for x in extra]
    r = nodetape("replay", bad, *extra)
    assert "part-000000.parquet" in one_line_exit_2(r)
    if "--out" in extra:
        assert not (tmp_path / "OUT").exists()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"] + (["INTO"] if "--into" in extra else [])


def test_a_failed_out_leaves_nothing_and_a_retry_works(tape, tmp_path):
    bad = damaged_copy(tape, tmp_path / "t")
    out = tmp_path / "slice"
    one_line_exit_2(nodetape("replay", bad, "--out", out), "part-000000.parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t"]
    shutil.copy(part(tape), part(bad))  # the part repaired
    r = nodetape("replay", bad, "--out", out)
    assert r.returncode == 0, r.stderr
    assert nodetape("replay", out).stdout.count(b"\n") == 2000


def test_null_in_ts_ns_is_damage_not_fewer_rows(tape, tmp_path):
    t = shutil.copytree(tape, tmp_path / "t")
    tbl = pq.read_table(part(t))
    ts = tbl.column("ts_ns").to_pylist()
    ts[5] = None
    i = tbl.schema.get_field_index("ts_ns")
    tbl = tbl.set_column(i, pa.field("ts_ns", pa.int64(), nullable=True), pa.array(ts, pa.int64()))
    pq.write_table(tbl, part(t))
    reseal(t, "cgroup_events", part(t))  # a forger who also fixed size and checksum: the NULL itself is caught
    for extra in ([], ["--from", str(BOOT0 + 10)]):
        one_line_exit_2(nodetape("replay", t, *extra), "part-000000.parquet", "NULL in non-null column ts_ns")


def reseal(t, table, path):
    from nodetape.tape.partfile import blake2b_file

    m = json.loads((t / "manifest.json").read_text())
    entry = m["tables"][table]
    size = path.stat().st_size
    entry["bytes"] = size
    entry["checksums"][path.name].update(bytes=size, blake2b=blake2b_file(path))
    (t / "manifest.json").write_text(json.dumps(m))


def test_control_characters_of_tape_values_are_escaped(tmp_path):
    t = make_tape(tmp_path / "t", [[("cgroup_events", rows([cg_event(BOOT0, "created", "/a\x1b[2J\x9b31m\x7f")]))]])
    for extra in ([], ["--speed", "1e9"]):
        out = nodetape("replay", t, *extra).stdout.decode()
        assert "\x1b" not in out and "\x9b" not in out and "\x7f" not in out
        assert "\\u001b[2J\\u009b31m\\u007f" in out
