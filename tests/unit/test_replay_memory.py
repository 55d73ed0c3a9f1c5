"""Bounded memory: replaying a tape whose decoded rows are far larger than a memory budget.

The tape is generated with the real TapeWriter (generated rows are fine here: this
tests the merge, not the kernel). The replay runs in a child process so that its
peak RSS (ru_maxrss) is its own; the budget is that child's import floor plus 120 MB,
while holding the tape's rows as Python objects would take several times more.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nodetape.schemas import batch
from nodetape.tape.reader import open_tape
from nodetape.tape.writer import TapeWriter

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from bench.bench_replay import make_tape  # noqa: E402

BUDGET_MB = 120
OPENS = 300_000
PATH_BYTES = 1024

_CHILD = r"""
import json, sys

def hwm_kb():
    # VmHWM: peak RSS of this process's own memory map. ru_maxrss would not do: exec
    # keeps the high-water mark of the forked copy of the (large) parent.
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

from nodetape.replay import open as replay_open
import nodetape.replay.command, nodetape.replay.sinks.jsonl, pyarrow.parquet
floor = hwm_kb()
n, last, bad = 0, None, 0
rp = replay_open(sys.argv[1])
for ev in rp.events():
    n += 1
    if last is not None and ev.time_ns < last:
        bad += 1
    last = ev.time_ns
print(json.dumps({"n": n, "bad": bad, "floor_kb": floor, "peak_kb": hwm_kb()}))
"""


def big_tape(path: Path) -> int:
    counts = make_tape(path, 1_000_000)
    # add wide rows: 300k file opens with 1 KiB paths (about 300 MB as Python strings)
    pool = [("/data/" + f"{i:04d}" * (PATH_BYTES // 4))[:PATH_BYTES] for i in range(64)]
    # written beside the tape, then its table folder moved in (a reader lists parts per folder)
    tape = open_tape(path)
    w = TapeWriter(path / "opens-tmp", dict(tape.manifest, tables={}))
    step = 50_000
    for i in range(0, OPENS, step):
        k = np.arange(i, i + step)
        w.append("file_opens", batch("file_opens", {
            "ts_ns": 1_000_000_000 + k * 100_000, "pid": (k % 30_000).astype(np.int32),
            "path": [pool[j % 64] for j in range(i, i + step)], "flags": np.zeros(step, np.int32),
            "ret": np.full(step, 3, np.int32)}))
    w.close(tape.manifest["end_ns"])
    (path / "opens-tmp" / "file_opens").rename(path / "file_opens")
    # the closed tape's manifest names the parts moved in (else they are damage: security.md)
    mf = path / "manifest.json"
    m = json.loads(mf.read_text())
    m["tables"]["file_opens"] = json.loads((path / "opens-tmp" / "manifest.json").read_text())["tables"]["file_opens"]
    mf.write_text(json.dumps(m))
    return sum(counts.values()) + OPENS


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    tape = tmp_path_factory.mktemp("replay-memory") / "big"
    return tape, big_tape(tape)


def test_replay_memory_stays_bounded_on_a_large_tape(big):
    tape, total = big
    r = subprocess.run([sys.executable, "-c", _CHILD, str(tape)], capture_output=True, text=True, timeout=600, cwd=str(REPO))
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["n"] == total and res["bad"] == 0
    grew_mb = (res["peak_kb"] - res["floor_kb"]) / 1024
    # the decoded rows alone (1.3M rows, 300 MB of path text) dwarf the budget
    print(f"replayed {total} events; peak RSS grew {grew_mb:.1f} MB over the import floor")
    assert grew_mb < BUDGET_MB, f"replay grew {grew_mb:.0f} MB over its import floor"


_JSONL_CHILD = r"""
import json, os, sys

def hwm_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

from nodetape.replay.command import run_replay
import nodetape.replay.sinks.jsonl, pyarrow.parquet
floor = hwm_kb()
code = run_replay(tapes=[sys.argv[1]], max_speed=True, output=sys.argv[2], stdout=sys.stderr)
print(json.dumps({"code": code, "floor_kb": floor, "peak_kb": hwm_kb()}))
"""


def test_jsonl_replay_memory_stays_bounded(big, tmp_path):
    """The column-wise jsonl path holds Arrow batches of lines, a few per open part."""
    tape, total = big
    out = tmp_path / "events.jsonl"
    r = subprocess.run([sys.executable, "-c", _JSONL_CHILD, str(tape), str(out)], capture_output=True, text=True,
                       timeout=600, cwd=str(REPO))
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["code"] == 0
    with open(out, "rb") as f:
        assert sum(1 for _ in f) == total
    grew_mb = (res["peak_kb"] - res["floor_kb"]) / 1024
    print(f"jsonl of {total} events ({out.stat().st_size >> 20} MiB); peak RSS grew {grew_mb:.1f} MB over the import floor")
    assert grew_mb < BUDGET_MB, f"jsonl replay grew {grew_mb:.0f} MB over its import floor"
