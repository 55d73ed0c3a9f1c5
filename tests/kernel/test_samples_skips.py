"""Skip rule 4 of the samples source on real v1 cgroups: a count that read 0 is not
re-read until a write to cgroup.procs/tasks, and that write is never missed."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from kernelutil import CGROUP_ROOT, spawn_in_cgroups, unique_name, v1_cgroup
from nodetape.recorder.loop import Recorder, RecordOptions
from nodetape.recorder.source import RecordContext

from nodetape.tape.reader import connect, open_tapes

pytestmark = pytest.mark.kernel


def test_zero_counts_follow_a_task_moved_into_an_empty_v1_cgroup(tmp_path):
    name = unique_name()
    with v1_cgroup("cpu", f"{name}/child") as cpu_dir, v1_cgroup("pids", f"{name}/child") as pids_dir:
        ctx = RecordContext(cgroup_root=CGROUP_ROOT, interval_ns=200_000_000)
        out = tmp_path / "tape"
        rec = Recorder(RecordOptions(out=out, sources=["samples"], ctx=ctx, duration_ns=10_000_000_000,
                                     tick_ns=50_000_000))
        def workload():
            time.sleep(0.6)  # several samples of the empty cgroups: their zero counts are skipped
            p = spawn_in_cgroups(["sleep", "0.6"], [cpu_dir, pids_dir])  # writes cgroup.procs in both
            p.wait()  # reaped: gone from cgroup.procs too
            time.sleep(0.6)  # a few samples after it
            rec.request_stop()

        th = threading.Thread(target=workload)
        th.start()
        rec.run()
        th.join()
        con = connect(open_tapes([Path(out)]))

        def counts(rel):
            return [r for r in con.execute("SELECT pids_current, nr_procs FROM cgroup_samples WHERE cgroup_path = ? "
                                           "ORDER BY ts_ns", [rel]).fetchall()]

        child, parent = counts(f"/{name}/child"), counts(f"/{name}")
    # before, during, after: 0 -> 1 -> 0 in the child; the parent's hierarchical pids.current too
    assert child[0] == (0, 0) and child[-1] == (0, 0)
    assert (1, 1) in child, child
    # the two counts come from two hierarchies read a moment apart: around the exit one
    # may already be 0 while the other still counts the task (pids uncharges at release)
    assert set(child) <= {(0, 0), (1, 1), (0, 1), (1, 0)}
    assert parent[0] == (0, 0) and parent[-1] == (0, 0) and (1, 0) in parent, parent
    assert {n for _, n in parent} == {0}
