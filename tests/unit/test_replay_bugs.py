"""Issue 13's two replay bugs: per-tape cgroup id maps, and ISO times through every clock pair."""

from __future__ import annotations

import io
import json

from nodetape import api
from nodetape.replay.command import run_replay
from nodetape.tape.clockmap import boot_to_wall, clock_pairs, offset_at, wall_to_boot

from replay_util import BOOT0, OFFSET, cg_event, make_tape, rows

S = 1_000_000_000


def lines(**kw) -> list[dict]:
    out = io.StringIO()
    assert run_replay(max_speed=True, stdout=out, **kw) == 0
    return [json.loads(x) for x in out.getvalue().splitlines()]


def counts(ts, cid):
    return {"interval_start_ns": [ts - S], "interval_end_ns": [ts], "cgroup_id": [cid], "syscall_nr": [0],
            "syscall_name": ["read"], "count": [1]}


def test_cgroup_filter_over_several_tapes_keys_ids_by_tape(tmp_path):
    a = make_tape(tmp_path / "a", [[("cgroup_events", rows([cg_event(BOOT0 + S, "created", "/kubepods/pod1/c1",
                                                                      cgroup_id=5)])),
                                    ("syscall_counts", counts(BOOT0 + 2 * S, 5))]], hostname="node-a")
    b = make_tape(tmp_path / "b", [[("cgroup_events", rows([cg_event(BOOT0 + S, "created", "/system.slice/x.service",
                                                                      cgroup_id=5)])),
                                    ("syscall_counts", counts(BOOT0 + 2 * S, 5))]], hostname="node-b")
    got = lines(tapes=[str(a), str(b)], cgroup="/kubepods/*", tables="syscall_counts")
    assert [r["host"] for r in got] == ["node-a"]
    got = lines(tapes=[str(a), str(b)], cgroup="/system.slice/*", tables="syscall_counts")
    assert [r["host"] for r in got] == ["node-b"]


def stepped_tape(path, step_ns=3600 * S):
    """Rows at +20, +21, +22 s; the wall clock stepped forward by step_ns at +10 s (NTP)."""
    t = make_tape(path, [[("cgroup_events", rows([cg_event(BOOT0 + k * S, "created", f"/c{k}") for k in (20, 21, 22)]))]])
    m = json.loads((t / "manifest.json").read_text())
    m["clock"]["snapshots"] = [[BOOT0, BOOT0 + OFFSET], [BOOT0 + 10 * S, BOOT0 + 10 * S + OFFSET + step_ns]]
    (t / "manifest.json").write_text(json.dumps(m))
    return t


def test_from_an_iso_ts_copied_from_sql_after_an_ntp_step(tmp_path):
    t = stepped_tape(tmp_path / "t")
    ts = api.open(t).sql("SELECT ts FROM cgroup_events ORDER BY ts_ns").to_pylist()
    first = ts[0]["ts"].isoformat()
    assert len(lines(tapes=[str(t)], from_=first)) == 3
    assert [r["cgroup_path"] for r in lines(tapes=[str(t)], from_=first, to=ts[2]["ts"].isoformat())] == ["/c20", "/c21"]


def test_clockmap_matches_the_views_rule():
    m = {"offset_ns": 100, "snapshots": [[1000, 1100], [2000, 5100], [3000, 3050]]}  # +3000 step, then -2950
    pairs = clock_pairs(m)
    assert pairs == [(1000, 100), (2000, 3100), (3000, 50)]
    assert offset_at(0, pairs) == 100 and offset_at(1999, pairs) == 100 and offset_at(2000, pairs) == 3100
    assert offset_at(3000, pairs) == 50
    for boot in (0, 999, 1500, 1999, 2000, 2500, 2999, 3000, 10_000):
        w = boot_to_wall(boot, pairs)
        b = wall_to_boot(w, pairs)
        assert b <= boot and boot_to_wall(b, pairs) >= w  # the first moment the wall clock read w
    # a wall time skipped by the forward step: the step itself
    assert wall_to_boot(2500, pairs) == 2000
    assert clock_pairs({"offset_ns": 7}) == [(0, 7)]
