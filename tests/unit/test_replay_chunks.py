"""The column-wise jsonl encoder (BatchEncoder) gives the bytes of a plain per-row
reference encoding (json.dumps of each row's dict), and the chunk path (no pacing)
the bytes of the row path (pacing, --into, the API), on random tapes: ties across
tables, parts and tapes, unsorted parts, NULLs, odd floats and text, windows and
filters, and batch boundaries everywhere (tiny batches)."""

from __future__ import annotations

import io
import json
import math
import random

import pytest

from nodetape import replay
from nodetape.replay import merge as merge_mod
from nodetape.replay.command import run_replay

from replay_util import BOOT0, OFFSET, make_tape

S = 1_000_000_000
PATHS = ["/kubepods", "/kubepods/burstable/pod-a/c1", "/kubepods/burstable/pod-b/c2", 'we"ird\\path\n\t\x01', "/ünï/ç😀"]
FLOATS = [0.0, -0.0, 1.5, 0.1, 1e-7, 1e16, 123456789.123, float("nan"), float("inf"), float("-inf"), None]


def _flush(rng: random.Random, t0: int) -> list:
    def times(n):
        # few distinct times: many ties inside a part, across tables and across parts
        return [t0 + rng.choice([0, 0, 1, 2, 5]) * S // 4 for _ in range(n)]

    n = rng.randint(0, 9)
    ev = {"ts_ns": times(n), "source": [rng.choice(["inotify", "ebpf"]) for _ in range(n)],
          "kind": [rng.choice(["created", "removed", "attach"]) for _ in range(n)],
          "hierarchy": [rng.choice(["unified", "cpu"]) for _ in range(n)],
          "cgroup_path": [rng.choice(PATHS) for _ in range(n)],
          "cgroup_id": [rng.choice([None, 1, 2, 2**63 + 5]) for _ in range(n)],
          "pid": [rng.choice([None, -1, 4242]) for _ in range(n)]}
    m = rng.randint(0, 9)
    psi = {"ts_ns": times(m), "scope": [rng.choice(["system", *PATHS]) for _ in range(m)],
           "resource": [rng.choice(["cpu", "memory"]) for _ in range(m)],
           "some_avg10": [rng.choice(FLOATS) for _ in range(m)], "some_avg60": [rng.random() for _ in range(m)],
           "some_total_usec": [rng.choice([None, 0, -(2**63), 2**63 - 1]) for _ in range(m)]}
    k = rng.randint(0, 5)
    sc = {"interval_start_ns": [t - S for t in times(k)], "cgroup_id": [rng.choice([1, 2]) for _ in range(k)],
          "syscall_nr": [rng.randint(0, 3) for _ in range(k)], "syscall_name": [None] * k,
          "count": [rng.randint(1, 9) for _ in range(k)]}
    sc["interval_end_ns"] = [t + S for t in sc["interval_start_ns"]]
    out = []
    for name, cols, rows in (("cgroup_events", ev, n), ("psi_samples", psi, m), ("syscall_counts", sc, k)):
        if rows:
            out.append((name, cols))
    rng.shuffle(out)
    return out


def _tape(path, seed: int, offset=OFFSET, hostname="node-a"):
    rng = random.Random(seed)
    flushes = [_flush(rng, BOOT0 + (i // 2) * S) for i in range(rng.randint(1, 5))]
    return make_tape(path, flushes, offset_ns=offset, hostname=hostname)


def _reference(v):
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if isinstance(v, str):
        return v.translate({c: None for c in range(0x7F, 0xA0)})  # not in these tapes
    return v


def _row_path(paths, **sel) -> str:
    """The stream spelled row by row with json.dumps, in the order of rows()."""
    rp = replay.open(paths)
    out = []
    for run, _t, vals in rp.rows(rp.select(**sel)):
        head = {"table": run.table.name}
        if len(rp.tapes) > 1:
            head["host"] = rp.hosts[run.tape_idx]
        row = {**head, **{k: _reference(v) for k, v in zip(run.table.column_names, vals)}}
        out.append(json.dumps(row, separators=(",", ":"), ensure_ascii=False) + "\n")
    return "".join(out)


def _paced_path(paths, **kw) -> str:
    """The row path of the CLI: paced (a fake clock), so lines come from rows_with_text()."""
    buf = io.StringIO()
    now = [0]
    assert run_replay(tapes=[str(p) for p in paths], speed=1e6, stdout=buf, clock=lambda: now[0],
                      sleep=lambda s: now.__setitem__(0, now[0] + int(s * 1e9) + 1), **kw) == 0
    return buf.getvalue()


def _chunk_path(paths, **kw) -> str:
    buf = io.StringIO()
    assert run_replay(tapes=[str(p) for p in paths], max_speed=True, stdout=buf, **kw) == 0
    return buf.getvalue()


@pytest.mark.parametrize("chunk_rows", [1, 3, 8192])
@pytest.mark.parametrize("seed", range(5))
def test_chunk_path_bytes_equal_row_path(tmp_path, monkeypatch, seed, chunk_rows):
    monkeypatch.setattr(merge_mod, "CHUNK_ROWS", chunk_rows)
    a = _tape(tmp_path / "a", seed)
    b = _tape(tmp_path / "b", seed + 1000, offset=OFFSET + S // 2, hostname="node-b")
    twin = _tape(tmp_path / "twin", seed, hostname="node-c")  # equal (time, table, seq) keys across tapes
    for paths in ([a], [twin, a, b]):
        assert _chunk_path(paths) == _row_path(paths) == _paced_path(paths)
        kw = {"from_": "+0.5s", "to": "+2s", "cgroup": "/kubepods/*"}
        assert _chunk_path(paths, **kw) == _row_path(paths, **kw)
        assert _chunk_path(paths, tables="psi_samples,syscall_counts") == _row_path(
            paths, tables="psi_samples,syscall_counts")


def test_check_through_the_chunk_path(tmp_path, monkeypatch):
    monkeypatch.setattr(merge_mod, "CHUNK_ROWS", 2)
    a = _tape(tmp_path / "a", 7)
    want = _row_path([a])
    exp = tmp_path / "exp.jsonl"
    exp.write_text(want, encoding="utf-8")
    out = io.StringIO()
    assert run_replay(tapes=[str(a)], check=str(exp), stdout=out) == 0
    lines = want.splitlines()
    lines[len(lines) // 2] = lines[len(lines) // 2].replace('"table"', '"tablx"')
    exp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert run_replay(tapes=[str(a)], check=str(exp), stdout=out) == 1
    assert f"at event {len(lines) // 2 + 1}:" in out.getvalue()


def test_output_file_gets_the_same_bytes(tmp_path):
    a = _tape(tmp_path / "a", 3)
    out = tmp_path / "out.jsonl"
    assert run_replay(tapes=[str(a)], max_speed=True, output=str(out)) == 0
    assert out.read_bytes() == _row_path([a]).encode("utf-8")
