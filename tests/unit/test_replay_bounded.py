"""Bounded resources whatever the tape holds: thousands of parts overlapping in time replay under a
small open-files limit (the merge keeps at most parts.MAX_OPEN files open)."""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys

from nodetape.replay.parts import MAX_OPEN

from replay_util import BOOT0, cg_event, make_tape, rows

S = 1_000_000_000
PARTS = 2000
NOFILE = 128


def many_parts(path):
    t = make_tape(path, [[("cgroup_events", rows([cg_event(BOOT0 + k * S, "created", f"/c{k}") for k in range(3)]))]])
    folder = t / "cgroup_events"
    first = folder / "part-000000.parquet"
    names = [f"part-{i:06d}.parquet" for i in range(PARTS)]
    for n in names[1:]:
        shutil.copy(first, folder / n)
    m = json.loads((t / "manifest.json").read_text())
    m["tables"]["cgroup_events"].update(parts=names, rows=3 * PARTS, bytes=first.stat().st_size * PARTS)
    (t / "manifest.json").write_text(json.dumps(m))
    return t


def limited(*args) -> subprocess.CompletedProcess:
    def cap():
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))

    return subprocess.run([sys.executable, "-m", "nodetape.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300, preexec_fn=cap)


def test_thousands_of_overlapping_parts_under_a_small_fd_limit(tmp_path):
    assert MAX_OPEN < NOFILE - 32
    t = many_parts(tmp_path / "t")
    for extra in ([], ["--speed", "1e9"], ["--cgroup", "/c1"]):
        r = limited("replay", t, *extra)
        assert r.returncode == 0, r.stderr[-500:]
        got = [json.loads(x) for x in r.stdout.splitlines()]
        want = PARTS * (1 if extra[:1] == ["--cgroup"] else 3)
        assert len(got) == want
        assert [g["ts_ns"] for g in got] == sorted(g["ts_ns"] for g in got)
