"""Tape writer reliability: retention, size bound, memory bound, disk full, manifest/disk consistency."""

from __future__ import annotations

import errno
import json
import os
import threading

import pytest

from nodetape.core.errors import TapeError

from nodetape import schemas
from nodetape.tape import writer as tw
from nodetape.tape.format import new_manifest, read_manifest
from nodetape.tape.snapshot import write_snapshot
from nodetape.tape.reader import connect, open_tape, open_tapes
from nodetape.tape.writer import DiskFull, TapeWriter


class FakeClock:
    def __init__(self):
        self.t = 0

    def __call__(self):
        return self.t


def _manifest():
    return new_manifest(host={"hostname": "h"}, clock_pair=(0, 10**18), cgroup={"mode": "v2"},
                        options={}, schema_version=schemas.SCHEMA_VERSION)


def _psi(ts):
    n = len(ts)
    return schemas.batch("psi_samples", {"ts_ns": ts, "scope": ["system"] * n, "resource": ["cpu"] * n,
                                         "some_avg10": [1.0] * n})


def _procs(ts):
    n = len(ts)
    return schemas.batch("processes", {"ts_ns": ts, "source": ["proc"] * n, "event": ["seen"] * n, "pid": list(range(n)),
                                       "comm": ["x" * 40] * n})


def _count(tape, table):
    con = connect(open_tapes([tape]))
    return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_retention_retires_old_parts_manifest_first(tmp_path):
    tape = tmp_path / "t"
    clock, boot = FakeClock(), FakeClock()
    w = TapeWriter(tape, _manifest(), retain_ns=100, delete_grace_ns=1000, clock=clock, boot_clock=boot)
    for start in (0, 100, 200, 300):
        w.append("psi_samples", _psi([start, start + 50]))
        w.flush()
    boot.t = 260  # keep parts whose newest row is >= 160
    w.flush()
    m = read_manifest(tape)
    t = m["tables"]["psi_samples"]
    assert t["parts"] == ["part-000002.parquet", "part-000003.parquet"] and t["first_part"] == 2 and t["rows"] == 4
    assert m["retention"]["retired_parts"] == 2 and m["retention"]["retired_rows"] == 4
    # still on disk during the grace period, but no longer part of the tape
    assert (tape / "psi_samples" / "part-000000.parquet").exists()
    assert [p.name for p in open_tape(tape).parts["psi_samples"]] == t["parts"]
    assert _count(tape, "psi_samples") == 4
    clock.t = 2000
    w.flush()
    assert sorted(os.listdir(tape / "psi_samples")) == t["parts"]
    w.close(end_ns=400)


def test_max_size_keeps_the_newest_parts(tmp_path):
    tape = tmp_path / "t"
    w = TapeWriter(tape, _manifest(), max_tape_bytes=30_000, delete_grace_ns=0)
    for i in range(20):
        w.append("psi_samples", _psi(list(range(i * 100, i * 100 + 100))))
        w.append("processes", _procs(list(range(i * 100, i * 100 + 100))))
        w.flush()
    w.close(end_ns=10_000)
    on_disk = sum(f.stat().st_size for d in ("psi_samples", "processes") for f in (tape / d).iterdir())
    assert on_disk <= 30_000
    m = read_manifest(tape)
    # the oldest went first: what is left is a suffix of each table
    assert m["tables"]["psi_samples"]["parts"][-1] == "part-000019.parquet"
    con = connect(open_tapes([tape]))
    assert con.execute("SELECT max(ts_ns) FROM psi_samples").fetchone()[0] == 1999


def test_reader_trusts_disk_over_manifest_both_ways_on_a_live_tape(tmp_path):
    tape = tmp_path / "t"
    w = TapeWriter(tape, _manifest())
    for ts in ([1], [2], [3]):
        w.append("psi_samples", _psi(ts))
        w.flush()
    mf = tape / "manifest.json"
    m = json.loads(mf.read_text())
    assert not m["closed"]  # a recorder still writing it, or one that was SIGKILLed
    m["tables"]["psi_samples"].pop("checksums")
    # a SIGKILL after a part's rename, before the manifest rewrite: the manifest lacks it
    m["tables"]["psi_samples"]["parts"] = m["tables"]["psi_samples"]["parts"][:1]
    mf.write_text(json.dumps(m))
    assert _count(tape, "psi_samples") == 3
    # the reverse: the manifest names a part whose file is gone
    (tape / "psi_samples" / "part-000001.parquet").unlink()
    m["tables"]["psi_samples"]["parts"] = ["part-000000.parquet", "part-000001.parquet", "part-000002.parquet"]
    mf.write_text(json.dumps(m))
    assert _count(tape, "psi_samples") == 2


def test_closed_tape_with_a_missing_or_unnamed_part_is_damaged(tmp_path):
    tape = tmp_path / "t"
    w = TapeWriter(tape, _manifest())
    for ts in ([1], [2], [3]):
        w.append("psi_samples", _psi(ts))
        w.flush()
    w.close(end_ns=5)
    (tape / "psi_samples" / "part-000001.parquet").rename(tape / "psi_samples" / "part-000009.parquet")
    with pytest.raises(TapeError, match=r"part-000001.parquet: part named by the manifest is missing"):
        open_tapes([tape])
    t = open_tapes([tape], allow_damaged=True, stderr=open(os.devnull, "w"))[0]
    assert [p.name for p in t.parts["psi_samples"]] == ["part-000000.parquet", "part-000002.parquet"]
    assert any("part-000009.parquet: part not named by the manifest" in s for s in t.skipped)


def test_concurrent_reader_never_fails_while_retention_deletes(tmp_path):
    tape = tmp_path / "t"
    w = TapeWriter(tape, _manifest(), retain_ns=1, delete_grace_ns=0, boot_clock=FakeClock())
    errors, counts, stop = [], [], threading.Event()

    def read():
        while not stop.is_set():
            try:
                counts.append(_count(tape, "psi_samples"))
            except Exception as e:  # any failure is the bug this test looks for
                errors.append(repr(e))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(150):
            w.append("psi_samples", _psi([i]))
            w.flush()
            # retire everything but the newest part, unlink at once: the harshest case
            w.ledger.enforce(now_boot_ns=i + 1)
            w.write_manifest()
            w.ledger.unlink_pending(force=True)
    finally:
        stop.set()
        reader.join()
    w.close(end_ns=200)
    # a query may still race an unlink between open and scan; with the real grace
    # period that window is the grace; here (grace 0) only the opening must hold
    bad = [e for e in errors if "TapeError" in e or "KeyError" in e or "TypeError" in e]
    assert not bad, bad[:3]
    assert counts


def test_concurrent_reader_with_grace_period_sees_no_error(tmp_path):
    tape = tmp_path / "t"
    boot = FakeClock()
    w = TapeWriter(tape, _manifest(), retain_ns=1, delete_grace_ns=2_000_000_000, boot_clock=boot)
    errors, counts, stop = [], [], threading.Event()

    def read():
        while not stop.is_set():
            try:
                counts.append(_count(tape, "psi_samples"))
            except Exception as e:
                errors.append(repr(e))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(100):
            w.append("psi_samples", _psi([i]))
            boot.t = i + 1  # every flush retires all but the newest part
            w.flush()
    finally:
        stop.set()
        reader.join()
    w.close(end_ns=200)
    assert not errors, errors[:3]
    assert counts and all(c >= 0 for c in counts)


def test_memory_bound_drops_raw_rows_not_sampled(tmp_path):
    tape = tmp_path / "t"
    clock = FakeClock()
    w = TapeWriter(tape, _manifest(), max_total_bytes=4096, clock=clock)
    clock.t = w.min_early_flush_ns  # one early flush allowed
    for i in range(50):
        w.append("processes", _procs(list(range(i * 100, i * 100 + 100))))
        w.append("psi_samples", _psi([i]))
    assert w.early_flushes == 1
    assert w.dropped["processes"]["backpressure"] > 0
    assert "psi_samples" not in w.dropped
    assert w.buffered_bytes < 4096 + 2 * _psi(list(range(50))).nbytes + 50 * _procs(list(range(100))).nbytes
    w.close(end_ns=10)
    m = read_manifest(tape)
    assert m["writer"]["dropped"]["processes"]["backpressure"] == w.dropped["processes"]["backpressure"]
    assert m["tables"]["psi_samples"]["rows"] == 50


def test_an_offline_writer_never_drops_rows(tmp_path):
    clock = FakeClock()
    tape = tmp_path / "t"
    w = TapeWriter(tape, _manifest(), max_total_bytes=4096, clock=clock, offline=True)
    for i in range(50):
        w.append("processes", _procs(list(range(i * 100, i * 100 + 100))))
    assert not w.dropped and w.early_flushes > 1
    w.close(end_ns=10)
    m = read_manifest(tape)
    assert m["tables"]["processes"]["rows"] == 5000 and "writer" not in m or not m["writer"]["dropped"]
    assert "last_flush_ns" not in m and not (tape / tw.RESERVE).exists()


def test_an_offline_writer_fails_at_once_on_a_full_disk(tmp_path, monkeypatch):
    def full(path, data, mode=0o600):
        raise OSError(errno.ENOSPC, "No space left on device")
    w = TapeWriter(tmp_path / "t", _manifest(), offline=True)
    monkeypatch.setattr(tw, "_write_file", full)
    w.append("psi_samples", _psi([1]))
    with pytest.raises(DiskFull, match="an offline copy drops no rows"):
        w.flush()


def test_every_part_carries_size_rows_and_checksum(tmp_path):
    import hashlib

    tape = tmp_path / "t"
    w = TapeWriter(tape, _manifest())
    for ts in ([1, 2], [3]):
        w.append("psi_samples", _psi(ts))
        w.flush()
    w.close(end_ns=5)
    m = read_manifest(tape)
    assert m.format_version == 3  # 3: compacted part names (format.py)
    sums = m.tables["psi_samples"].sums
    for name, rows in (("part-000000.parquet", 2), ("part-000001.parquet", 1)):
        data = (tape / "psi_samples" / name).read_bytes()
        assert sums[name].bytes == len(data) and sums[name].rows == rows
        assert sums[name].blake2b == hashlib.blake2b(data, digest_size=32).hexdigest()


def _fill_disk_after(monkeypatch, ok_tables):
    real = tw._write_file

    def fake(path, data, mode=0o600):
        if path.parent.name not in ok_tables:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data, mode)

    monkeypatch.setattr(tw, "_write_file", fake)


def test_disk_full_drops_raw_tables_first(tmp_path, monkeypatch):
    tape = tmp_path / "t"
    w = TapeWriter(tape, _manifest())
    w.append("psi_samples", _psi([1]))
    w.append("processes", _procs([1]))
    w.flush()
    _fill_disk_after(monkeypatch, ok_tables={"psi_samples"})
    w.append("psi_samples", _psi([2]))
    w.append("processes", _procs([2, 3]))
    w.flush()
    assert w.degraded and not w.failed
    w.append("processes", _procs([4]))  # raw rows now dropped on arrival
    w.close(end_ns=9)
    m = read_manifest(tape)
    assert m["closed"] and "raw event tables" in m["disk_full"]["action"]
    assert m["writer"]["dropped"]["processes"]["disk_full"] == 3
    assert _count(tape, "psi_samples") == 2 and _count(tape, "processes") == 1
    assert not [f for d in tape.iterdir() if d.is_dir() for f in os.listdir(d) if f.endswith(".tmp")]


def test_disk_full_fatal_keeps_tape_valid(tmp_path, monkeypatch):
    tape = tmp_path / "t"
    w = TapeWriter(tape, _manifest())
    w.append("psi_samples", _psi([1]))
    w.flush()
    _fill_disk_after(monkeypatch, ok_tables=set())
    w.append("psi_samples", _psi([2]))
    with pytest.raises(DiskFull) as e:
        w.flush()
    assert str(e.value).startswith(f"disk full writing {tape}")
    w.close(end_ns=3)  # the recorder still closes what it can
    m = read_manifest(tape)
    assert m["disk_full"]["fatal"] and m["stop_reason"].startswith("disk full")
    assert _count(tape, "psi_samples") == 1
    assert not (tape / tw.RESERVE).exists()


def test_manifest_write_failure_keeps_old_manifest(tmp_path, monkeypatch):
    from nodetape.tape import fs as mf

    tape = tmp_path / "t"
    w = TapeWriter(tape, _manifest())
    w.append("psi_samples", _psi([1]))
    w.flush()
    before = (tape / "manifest.json").read_text()
    real_replace = os.replace

    def fail(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mf.os, "replace", fail)
    assert not w._try_write_manifest()
    monkeypatch.setattr(mf.os, "replace", real_replace)
    assert (tape / "manifest.json").read_text() == before
    assert not (tape / ".manifest.json.tmp").exists()


def test_flight_recorder_mode_evicts_on_disk_full(tmp_path, monkeypatch):
    tape = tmp_path / "t"
    w = TapeWriter(tape, _manifest(), retain_ns=10**15)
    for i in range(5):
        w.append("psi_samples", _psi([i]))
        w.flush()
    real, calls = tw._write_file, []

    def once_full(path, data, mode=0o600):
        calls.append(path)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data, mode)

    monkeypatch.setattr(tw, "_write_file", once_full)
    w.append("psi_samples", _psi([5]))
    w.flush()
    assert not w.degraded
    m = read_manifest(tape)
    assert m["disk_full"]["evicted_parts"] >= 1
    assert m["tables"]["psi_samples"]["parts"][-1] == "part-000005.parquet"
    w.close(end_ns=9)


def test_tape_files_are_private(tmp_path):
    tape = tmp_path / "t"
    w = TapeWriter(tape, _manifest())
    w.append("psi_samples", _psi([1]))
    w.close(end_ns=2)
    assert os.stat(tape).st_mode & 0o777 == 0o700
    assert os.stat(tape / "psi_samples").st_mode & 0o077 == 0
    assert os.stat(tape / "manifest.json").st_mode & 0o777 == 0o600
    assert os.stat(tape / "psi_samples" / "part-000000.parquet").st_mode & 0o777 == 0o600


def test_tape_creation_is_atomic_and_refuses_non_empty(tmp_path):
    out = tmp_path / "t"
    out.mkdir()  # an empty folder the user made is fine
    TapeWriter(out, _manifest()).close(end_ns=1)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    with pytest.raises(FileExistsError):
        TapeWriter(out, _manifest())


def test_snapshot_links_the_window_and_survives_retention(tmp_path):
    tape = tmp_path / "t"
    w = TapeWriter(tape, _manifest(), retain_ns=100, delete_grace_ns=0, boot_clock=FakeClock())
    for start in (0, 100, 200):
        w.append("psi_samples", _psi([start]))
        w.flush()
    w.append("psi_samples", _psi([300]))
    snap = w.snapshot(tmp_path / "snaps" / "s1", "test")  # flushes first
    assert _count(snap, "psi_samples") == 4
    part = snap / "psi_samples" / "part-000000.parquet"
    assert os.stat(part).st_ino == os.stat(tape / "psi_samples" / "part-000000.parquet").st_ino
    w.ledger.enforce(now_boot_ns=10_000)
    w.write_manifest()
    w.ledger.unlink_pending(force=True)
    assert not (tape / "psi_samples" / "part-000000.parquet").exists()
    assert _count(snap, "psi_samples") == 4  # the links keep the snapshot whole
    m = read_manifest(snap)
    assert m["closed"] and m["snapshot"]["reason"] == "test" and "recorder" not in m
    w.close(end_ns=400)
    with pytest.raises(Exception):
        write_snapshot(tape, w.manifest, w.ledger.live_parts(), snap, reason="again")


def test_odd_tape_paths_and_values(tmp_path):
    tape = tmp_path / "a tape 'with' ünïcode ✓"
    odd = ["/kubepods/pod x y/ctr", "/ünïcödé/✓", "/" + "/".join(["deep"] * 200), "/it's \"quoted\"\n"]
    w = TapeWriter(tape, _manifest())
    w.append("cgroup_events", schemas.batch("cgroup_events", {
        "ts_ns": [1, 2, 3, 4], "source": ["inotify"] * 4, "kind": ["created"] * 4, "hierarchy": ["unified"] * 4,
        "cgroup_path": odd}))
    w.close(end_ns=5)
    con = connect(open_tapes([tape]))
    assert [r[0] for r in con.execute("SELECT cgroup_path FROM cgroup_events ORDER BY ts_ns").fetchall()] == odd
