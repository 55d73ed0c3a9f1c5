"""Compaction (nodetape/tape/compact.py): the plan on literal part lists, the merge, a crash at every step."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest

from nodetape import schemas
from nodetape.tape import compact
from nodetape.tape.compact import Compactor, Policy, install, merge, plan, tier, units
from nodetape.tape.format import new_manifest, read_manifest
from nodetape.tape.reader import connect, open_tape, open_tapes
from nodetape.tape.retention import PartInfo, part_name, part_range, visible_parts
from nodetape.tape.snapshot import write_snapshot
from nodetape.tape.verify import verify_tape
from nodetape.tape.writer import TapeWriter


def P(first, last=None, *, rows=10, nbytes=1000, max_ns=None, table="psi_samples"):
    last = first if last is None else last
    return PartInfo(table, first, rows, nbytes, max_ns if max_ns is not None else last, 0, None,
                    last=None if last == first else last)


# -- names and listing --------------------------------------------------------

def test_names_carry_their_range():
    assert part_name(7) == "part-000007.parquet" and part_name(7, 7) == "part-000007.parquet"
    assert part_name(3, 11) == "part-000003-000011.parquet"
    assert part_range("part-000003-000011.parquet") == (3, 11)
    assert part_range("part-000003.parquet") == (3, 3)
    # a range must grow: these are not what a writer writes
    assert part_range("part-000011-000003.parquet") is None
    assert part_range("part-000003-000003.parquet") is None


def test_listing_shows_a_compacted_part_instead_of_its_inputs():
    names = [part_name(i) for i in range(0, 8)] + [part_name(0, 2), part_name(3, 5), ".part-000006-000008.parquet.tmp"]
    assert visible_parts(names) == [part_name(0, 2), part_name(3, 5), part_name(6), part_name(7)]
    # a second tier over the first: the outermost wins, whatever else still waits for its unlink
    assert visible_parts(names + [part_name(0, 8)]) == [part_name(0, 8)]
    # retired parts (below first_part) are not shown, nor a range that starts below it
    assert visible_parts(names, first_part=3) == [part_name(3, 5), part_name(6), part_name(7)]
    # ranges that overlap without nesting (never written): no index counted twice
    assert visible_parts([part_name(0, 4), part_name(3, 6), part_name(7)]) == [part_name(0, 4), part_name(7)]


# -- the plan ---------------------------------------------------------------------

def test_tiers():
    assert [tier(n, 3) for n in (1, 2, 3, 8, 9, 26, 27, 81)] == [0, 0, 1, 1, 2, 2, 3, 4]
    assert units(P(3, 11)) == 9


def test_plan_merges_fan_in_consecutive_parts_of_one_tier():
    pol = Policy(fan_in=3, max_units=81)
    parts = [P(0, 8), P(9, 11), P(12, 14), P(15, 17), P(18), P(19)]
    assert [[p.index for p in g] for g in plan(parts, pol)] == [[9, 12, 15]]
    parts = [P(0, 2), P(3), P(4), P(5), P(6), P(7)]
    assert [[p.index for p in g] for g in plan(parts, pol)] == [[3, 4, 5]]


def test_plan_merges_a_run_that_fills_the_next_tier_at_once():
    pol = Policy(fan_in=3, max_units=81)
    # [3, 3, 1, 1, 1]: one merge into 9 units, not [1, 1, 1] -> 3 and then [3, 3, 3] -> 9
    parts = [P(0, 8), P(9, 11), P(12, 14), P(15), P(16), P(17), P(18), P(19)]
    groups = plan(parts, pol)
    assert [[p.name for p in g] for g in groups] == [
        [part_name(9, 11), part_name(12, 14), part_name(15), part_name(16), part_name(17)]]
    # every tier below waiting: [27, 27, 9, 9, 3, 3, 1, 1, 1] -> 81
    parts = [P(0, 26), P(27, 53), P(54, 62), P(63, 71), P(72, 74), P(75, 77), P(78), P(79), P(80)]
    assert [len(g) for g in plan(parts, pol)] == [9]
    # 81 units is too many: the run from the 9s ([9, 9, 3, 3, 1, 1, 1] -> 27)
    assert [[p.index for p in g] for g in plan(parts, Policy(fan_in=3, max_units=80))] == [[54, 63, 72, 75, 78, 79, 80]]
    # newer parts are never larger, and a gap stops the run
    assert plan([P(0), P(1, 3), P(4), P(5)], pol) == []
    assert [[p.index for p in g] for g in plan([P(0, 2), P(3, 5), P(7), P(8), P(9)], pol)] == [[7, 8, 9]]
    # too many bytes for one merge: the same-tier rule alone
    big = [P(0, 2, nbytes=4000), P(3, 5, nbytes=4000), P(6), P(7), P(8)]
    assert [[p.index for p in g] for g in plan(big, Policy(max_bytes=8500))] == [[6, 7, 8]]


def test_plan_respects_span_bytes_and_gaps():
    assert plan([P(0, 26), P(27, 53), P(54, 80)], Policy(max_units=81)) != []
    assert plan([P(0, 26), P(27, 53), P(54, 80)], Policy(max_units=80)) == []  # top tier: stays
    assert plan([P(0), P(1), P(2)], Policy(max_bytes=2999)) == []  # too big to merge in memory
    assert plan([P(0), P(2), P(3)], Policy()) == []  # a range name claims every index between its ends
    assert plan([P(0), P(1)], Policy()) == []


def test_policy_follows_the_window():
    assert Policy.for_window(2_000_000_000, 900_000_000_000).max_units == 90
    assert Policy.for_window(2_000_000_000, None).max_units == 300
    assert Policy.for_window(10**12, 10**9).max_units == 1


def _simulate(flush_s: float, retain_s: float, seconds: float, delay_flushes: int = 1) -> int:
    """Parts per table over time: a flush every `flush_s`, retention by newest row, merges
    planned at each flush and installed `delay_flushes` flushes later. Returns the maximum."""
    pol = Policy.for_window(int(flush_s * 1e9), int(retain_s * 1e9))
    parts: list[PartInfo] = []
    inflight: list[tuple[int, list[list[PartInfo]]]] = []
    worst = 0
    for i in range(int(seconds / flush_s)):
        now = i * flush_s
        for when, groups in [x for x in inflight if x[0] <= i]:
            inflight.remove((when, groups))
            for g in groups:
                if all(p in parts for p in g):
                    at = parts.index(g[0])
                    parts[at:at + len(g)] = [PartInfo("t", g[0].index, sum(p.rows for p in g), sum(p.bytes for p in g),
                                                      max(p.max_ns for p in g), 0, None, last=g[-1].end)]
        parts.append(PartInfo("t", i, 10, 1000, int(now * 1e9), 0, None))
        parts = [p for p in parts if p.max_ns >= (now - retain_s) * 1e9]
        worst = max(worst, len(parts))
        if not inflight:
            inflight.append((i + delay_flushes, plan(parts, pol)))
    return worst


@pytest.mark.parametrize("delay", [1, 2])
def test_a_15_minute_window_at_2s_flushes_holds_at_most_16_parts(delay):
    # retention and merges as the recorder runs them: a batch of merges is planned at a flush
    # and installed at the next (delay 1, the usual: a batch takes tens of ms) or the one after.
    # Slower still, parts wait: 17 at 3 flushes, 20 at 4 (docs/compaction.md)
    assert _simulate(2.0, 900, 3600, delay) <= 16


# -- merging a real tape -----------------------------------------------------------

def _manifest():
    return new_manifest(host={"hostname": "h"}, clock_pair=(0, 10**18), cgroup={"mode": "v2"},
                        options={}, schema_version=schemas.SCHEMA_VERSION)


def _psi(ts):
    n = len(ts)
    return schemas.batch("psi_samples", {"ts_ns": ts, "scope": ["system"] * n, "resource": ["cpu"] * n,
                                         "some_avg10": [float(t) for t in ts]})


def _rows(tape):
    con = connect(open_tapes([tape]))
    return con.execute("SELECT ts_ns, some_avg10 FROM psi_samples ORDER BY ts_ns").fetchall()


def _writer(tmp_path, n_parts=6, **kw):
    tape = tmp_path / "t"
    w = TapeWriter(tape, _manifest(), **kw)
    for i in range(n_parts):
        # out of time order within a part, as two sources writing one table leave it
        w.append("psi_samples", _psi([i * 100 + 50, i * 100 + 10, i * 100 + 30]))
        w.flush()
    return tape, w


def test_compactor_merges_in_the_background_sorted_and_verifiable(tmp_path):
    tape, w = _writer(tmp_path, delete_grace_ns=0)
    before = _rows(tape)
    c = Compactor(w, Policy(fan_in=3, max_units=81))
    assert c.schedule() == 2
    assert c.wait(60)
    c.stop()  # installs the finished batch
    w.flush()
    m = read_manifest(tape)
    assert m.tables["psi_samples"].parts == [part_name(0, 2), part_name(3, 5)]
    assert m.tables["psi_samples"].rows == 18 and c.stats.merges == 2 and c.stats.errors == 0
    assert sorted(os.listdir(tape / "psi_samples")) == [part_name(0, 2), part_name(3, 5)]
    assert _rows(tape) == before
    import pyarrow.parquet as pq
    ts = pq.read_table(tape / "psi_samples" / part_name(0, 2)).column("ts_ns").to_pylist()
    assert ts == sorted(ts)
    w.close(end_ns=10_000)
    assert verify_tape(tape).sound, verify_tape(tape).problems
    assert _rows(tape) == before
    # a snapshot of a compacted tape is a sound closed tape too
    snap = write_snapshot(tape, read_manifest(tape), open_tape(tape).parts, tmp_path / "snap", reason="test")
    assert verify_tape(snap).sound and _rows(snap) == before


def test_small_parts_merge_from_memory_into_the_same_bytes(tmp_path, monkeypatch):
    """A compactor that saw the parts written merges them without reading their files,
    into the same part (same checksum) as one that reads them back."""
    reads = []
    real_read = compact._read
    monkeypatch.setattr(compact, "_read", lambda p, want: reads.append(p.name) or real_read(p, want))

    def run(folder, early):
        w = TapeWriter(folder, _manifest(), delete_grace_ns=0)
        c = Compactor(w, Policy(fan_in=3, max_units=81)) if early else None
        for i in range(9):
            w.append("psi_samples", _psi([i * 100 + 50, i * 100 + 10, i * 100 + 30]))
            w.flush()
            if c is None and i == 8:
                c = Compactor(w, Policy(fan_in=3, max_units=81))
            if c is not None and (early or i == 8):
                for _ in range(2):  # the first tier, then the second over it
                    c.install_done()
                    c.schedule()
                    assert c.wait(60)
        c.stop()
        w.flush()
        return w, read_manifest(folder).tables["psi_samples"]

    _, memo = run(tmp_path / "memo", True)
    assert reads == [] and memo.parts == [part_name(0, 8)]
    _, disk = run(tmp_path / "disk", False)
    assert reads and disk.parts == [part_name(0, 8)]
    assert memo.sums == disk.sums and memo.rows == disk.rows == 27
    assert _rows(tmp_path / "memo") == _rows(tmp_path / "disk")


def _merge_and_stop(c: Compactor, w: TapeWriter) -> None:
    """Run the merges the sealed parts call for, install them, and flush the manifest."""
    c.install_done()
    c.schedule()
    assert c.wait(60)
    c.install_done()
    c.stop()
    w.flush()


def test_a_flushs_tiny_part_keeps_dictionary_pages_and_a_merge_does_not(tmp_path):
    """A flush writes a tiny part's dictionary columns as they are (no dense Cast per column);
    a merge writes them dense, the same bytes from memory or from files (test above)."""
    import pyarrow.parquet as pq

    def dict_pages(path):
        md = pq.ParquetFile(path).metadata.row_group(0)
        return {md.column(i).path_in_schema for i in range(md.num_columns) if md.column(i).has_dictionary_page}

    w = TapeWriter(tmp_path / "t", _manifest(), delete_grace_ns=0)
    c = Compactor(w, Policy(fan_in=3, max_units=81))
    for i in range(3):
        w.append("psi_samples", _psi([i * 10 + 1, i * 10 + 2]))
        w.flush()
    folder = tmp_path / "t" / "psi_samples"
    assert dict_pages(folder / part_name(0)) == {"scope", "resource"}
    _merge_and_stop(c, w)
    assert read_manifest(tmp_path / "t").tables["psi_samples"].parts[0] == part_name(0, 2)
    assert dict_pages(folder / part_name(0, 2)) == set()
    assert _rows(tmp_path / "t")[:2] == [(1, 1.0), (2, 2.0)]


def test_a_part_cut_from_a_bigger_column_writes_no_dictionary_page(tmp_path):
    """Rows sliced out of a big dictionary column keep its whole dictionary: written as a page, a
    3-row part would carry 5,000 paths (replay --out cutting a window from a compacted part)."""
    import pyarrow.parquet as pq

    n = 5000
    big = schemas.batch("psi_samples", {"ts_ns": list(range(1, n + 1)), "scope": [f"/kubepods/pod-{i:05d}" for i in range(n)],
                                        "resource": ["cpu"] * n, "some_avg10": [0.0] * n})
    cut = big.slice(7, 3)
    assert len(cut.column(cut.schema.get_field_index("scope")).dictionary) == n
    w = TapeWriter(tmp_path / "t", _manifest(), delete_grace_ns=0)
    w.append("psi_samples", cut)
    w.flush()
    path = tmp_path / "t" / "psi_samples" / part_name(0)
    md = pq.ParquetFile(path).metadata.row_group(0)
    assert not any(md.column(i).has_dictionary_page for i in range(md.num_columns))
    assert path.stat().st_size < 4096
    assert pq.read_table(path)["scope"].to_pylist() == ["/kubepods/pod-00007", "/kubepods/pod-00008", "/kubepods/pod-00009"]


def test_close_releases_the_kept_folder_descriptors_when_its_last_flush_fails(tmp_path, monkeypatch):
    import errno

    from nodetape.tape import writer as writer_mod

    w = TapeWriter(tmp_path / "t", _manifest(), delete_grace_ns=0)
    w.append("psi_samples", _psi([1]))
    w.flush()
    kept = dict(w._sealer._fds)
    assert kept
    w.append("psi_samples", _psi([2]))

    def eio(path, data):
        raise OSError(errno.EIO, "I/O error")
    monkeypatch.setattr(writer_mod, "_write_file", eio)
    with pytest.raises(OSError):
        w.close(5)
    assert not w._sealer._fds
    for fd in kept.values():
        with pytest.raises(OSError):
            os.fstat(fd)


def test_retention_retires_a_compacted_part_by_its_newest_row(tmp_path):
    class Clock:
        t = 0

        def __call__(self):
            return self.t

    boot = Clock()
    tape, w = _writer(tmp_path, retain_ns=1000, delete_grace_ns=0, boot_clock=boot)
    c = Compactor(w, Policy(fan_in=3, max_units=81))
    c.schedule()
    c.wait()
    c.stop()
    boot.t = 1000 + 250  # the first compacted part's newest row is at 250: still in the window
    w.flush()
    assert read_manifest(tape).tables["psi_samples"].parts == [part_name(0, 2), part_name(3, 5)]
    boot.t = 1000 + 251  # now its newest row is outside the window: it retires whole
    w.flush()
    m = read_manifest(tape)
    assert m.tables["psi_samples"].parts == [part_name(3, 5)] and m.tables["psi_samples"].first_part == 3
    assert m.retention["retired_parts"] == 1 and m.retention["retired_rows"] == 9
    assert len(_rows(tape)) == 9
    w.close(end_ns=2000)
    assert verify_tape(tape).sound


def test_a_merge_whose_input_retired_meanwhile_is_dropped(tmp_path):
    tape, w = _writer(tmp_path, n_parts=3, delete_grace_ns=0)
    inputs = list(w.ledger.parts["psi_samples"])
    m = merge(tape, inputs, "ts_ns", 0)
    w.ledger.retire(inputs[0])
    w.flush()
    assert install(w.ledger, m) is False
    assert sorted(os.listdir(tape / "psi_samples")) == [part_name(1), part_name(2)]


class Crash(Exception):
    pass


def _crash_at(monkeypatch, step):
    def at(name):
        if name == step:
            raise Crash(name)
    monkeypatch.setattr(compact, "_step", at)


@pytest.mark.parametrize("step", ["written", "renamed", "installed", "manifest", "unlinked"])
def test_a_crash_at_any_step_loses_nothing_and_counts_nothing_twice(tmp_path, monkeypatch, step):
    """The writer abandoned at each step (as a SIGKILL leaves it): the folder and manifest on
    disk still read as every row exactly once, and `verify` finds the live tape sound."""
    tape, w = _writer(tmp_path, n_parts=3, delete_grace_ns=0)
    before = _rows(tape)
    _crash_at(monkeypatch, step)
    inputs = list(w.ledger.parts["psi_samples"])
    try:
        m = merge(tape, inputs, "ts_ns", 0)
        install(w.ledger, m)
        compact._step("installed")
        w.write_manifest()
        compact._step("manifest")
        w.ledger.unlink_pending(force=True)
        compact._step("unlinked")
    except Crash:
        pass
    assert _rows(tape) == before
    res = verify_tape(tape)
    assert res.sound, res.problems
    names = set(read_manifest(tape).tables["psi_samples"].parts)
    assert all((tape / "psi_samples" / n).exists() for n in names)  # never a missing file


# -- in the recorder loop ----------------------------------------------------------

def test_the_recorder_compacts_at_its_flushes(tmp_path):
    """A real recording on a synthetic cgroup2 tree (no root): 50 ms flushes in a 15 s window
    (60 flushes per top-tier part at most), stopped cleanly: merges happened, the closed tape
    verifies, and every recorder_stats row is there once."""
    import shutil
    from pathlib import Path

    from nodetape.recorder.loop import Recorder, RecordOptions
    from nodetape.recorder.source import RecordContext

    root = tmp_path / "cgroupfs"
    shutil.copytree(Path(__file__).resolve().parents[2] / "fixtures" / "synthetic" / "v2-systemd", root)
    rec = Recorder(RecordOptions(out=tmp_path / "tape", sources=["cgroup", "samples", "psi"],
                                 ctx=RecordContext(cgroup_root=root, interval_ns=50_000_000),
                                 duration_ns=int(4e9), tick_ns=25_000_000, flush_interval_ns=50_000_000,
                                 retain_ns=15_000_000_000))
    m = rec.run()
    tape = tmp_path / "tape"
    assert m.writer["compaction"]["merges"] > 0 and m.writer["compaction"]["errors"] == 0
    assert any(part_range(n)[0] < part_range(n)[1] for e in m.tables.values() for n in e.parts)
    res = verify_tape(tape)
    assert res.sound, res.problems
    con = connect(open_tapes([tape]))
    n, d = con.execute("SELECT count(*), count(DISTINCT (ts_ns, source)) FROM recorder_stats").fetchone()
    assert n == d and n == m.tables["recorder_stats"].rows


# -- cheaper merges: what they skip -------------------------------------------------

def test_in_order_on_literal_keys():
    from nodetape.tape.compact import in_order

    def ca(*chunks):
        return pa.chunked_array([pa.array(c, type=pa.int64()) for c in chunks])

    assert in_order([ca([1, 2], [2, 5])]) and in_order([ca([])]) and in_order([ca([7])])
    assert not in_order([ca([1, 3], [2])])
    # ties on the first key: the second decides; equal on both: in order (a stable sort keeps them)
    assert in_order([ca([1, 1, 2]), ca([4, 5, 0])]) and in_order([ca([1, 1]), ca([3, 3])])
    assert not in_order([ca([1, 1, 2]), ca([5, 4, 0])])
    assert not in_order([pa.chunked_array([pa.array([1, None, 3])])])  # NULLs: the caller sorts
    assert not in_order([pa.chunked_array([pa.array(["a", "b"])])])  # not a number: the caller sorts


def test_a_merge_of_sorted_parts_skips_the_sort_and_writes_the_same_bytes(tmp_path, monkeypatch):
    tape = tmp_path / "t"
    w = TapeWriter(tape, _manifest(), offline=True)
    for i in range(3):
        w.append("psi_samples", _psi([i * 100 + 10, i * 100 + 30, i * 100 + 50]))  # in time order
        w.flush()
    inputs = w.ledger.parts["psi_samples"]
    sorts = []
    real_sort = compact.pc.sort_indices
    monkeypatch.setattr(compact.pc, "sort_indices", lambda *a, **k: sorts.append(1) or real_sort(*a, **k))
    fast = merge(tape, inputs, "ts_ns", 0)
    assert sorts == []
    monkeypatch.setattr(compact, "in_order", lambda keys: False)
    slow = merge(tape, inputs, "ts_ns", 0)
    assert sorts == [1] and fast.info.blake2b == slow.info.blake2b and fast.info.rows == 9


def test_a_flush_fsyncs_each_folder_once_after_its_renames(tmp_path, monkeypatch):
    from nodetape.tape import sealing

    synced, renamed = [], []
    real_fsync, real_replace = sealing.fsync_dir, sealing.os.replace
    real_folder = sealing.Sealer.fsync_folder
    monkeypatch.setattr(sealing, "fsync_dir", lambda p: synced.append(p.name) or real_fsync(p))  # the tape folder
    # a table folder's, through its kept descriptor
    monkeypatch.setattr(sealing.Sealer, "fsync_folder", lambda self, p: synced.append(p.name) or real_folder(self, p))
    # (os is one module: the manifest's renames are seen too)
    monkeypatch.setattr(sealing.os, "replace", lambda a, b: renamed.append((os.path.basename(b), len(synced)))
                        or real_replace(a, b))
    w = TapeWriter(tmp_path / "t", _manifest())
    synced.clear()  # the tape folder's, at creation
    w.append("psi_samples", _psi([1]))
    w.append("recorder_stats", schemas.batch("recorder_stats", {"ts_ns": [1], "source": ["recorder"]}))
    w.flush()
    w.append("psi_samples", _psi([2]))
    w.flush()
    # the first flush made both folders (the tape folder fsynced after each mkdir), renamed both
    # parts, then fsynced each folder once; the second, one folder
    assert synced == ["t", "t", "psi_samples", "recorder_stats", "psi_samples"]
    # every part renamed before its flush's folder fsyncs, the manifest after them
    assert renamed[-5:] == [(part_name(0), 1), (part_name(0), 2), ("manifest.json", 4),
                            (part_name(1), 4), ("manifest.json", 5)]
    assert read_manifest(tmp_path / "t").tables["psi_samples"].parts == [part_name(0), part_name(1)]


def test_a_big_part_keeps_only_the_dictionary_values_its_rows_use(tmp_path):
    """A big part (over LEAN_ROWS rows) has dictionary pages; rows sliced out of a bigger column carry
    its whole dictionary, which Arrow's writer would copy into the part (the 100M-row bench tape's
    cgroup_samples parts held 73,520 paths each for ~527 used). The part holds the values used,
    the rows read back the same, and so does a merge of such parts."""
    import pyarrow.parquet as pq

    from nodetape.tape.partfile import LEAN_ROWS, tight_dictionaries

    n, used = 60_000, 300
    rows = LEAN_ROWS + 1000
    scope = pa.DictionaryArray.from_arrays(pa.array([i % used for i in range(rows)], pa.int32()),
                                           pa.array([f"/kubepods/pod-{i:05d}" for i in range(n)]))

    def part(first_ts):
        return pa.Table.from_batches([schemas.batch("psi_samples", {
            "ts_ns": list(range(first_ts, first_ts + rows)), "scope": scope,
            "resource": ["cpu"] * rows, "some_avg10": [0.0] * rows})])

    big = part(1)
    assert len(big.column("scope").chunk(0).dictionary) == n
    tight = tight_dictionaries(big)
    assert tight.schema == big.schema and tight.column("scope").to_pylist() == big.column("scope").to_pylist()
    assert len(tight.column("scope").chunk(0).dictionary) == used
    assert tight_dictionaries(tight) is tight  # nothing loose: the same table, no copy

    w = TapeWriter(tmp_path / "t", _manifest(), delete_grace_ns=0)
    c = Compactor(w, Policy(fan_in=3, max_units=81))
    for i in range(3):
        w.append("psi_samples", part(1 + i * 10**7).to_batches()[0])
        w.flush()
    folder = tmp_path / "t" / "psi_samples"
    f = pq.ParquetFile(folder / part_name(0))
    assert len(f.read_row_group(0, columns=["scope"]).column(0).chunk(0).dictionary) == used
    assert f.metadata.row_group(0).column(1).total_uncompressed_size < 30_000  # 60,000 paths: ~1.2 MB
    _merge_and_stop(c, w)
    merged = folder / read_manifest(tmp_path / "t").tables["psi_samples"].parts[0]
    out = pq.read_table(merged)
    assert out.num_rows == 3 * rows
    assert out.column("scope").to_pylist() == big.column("scope").to_pylist() * 3
    assert max(len(ch.dictionary) for ch in out.column("scope").chunks) == used
