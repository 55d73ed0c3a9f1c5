"""Round trip on the real kernel: record a burst of kubelet-style cgroups, re-enact it with
`replay --into` while a second recorder watches that folder, and find the same containers
born and removed in the same order."""

from __future__ import annotations

import io
import json
import time
import uuid
from pathlib import Path

import pytest
from kernelutil import (
    CGROUP_ROOT,
    record_during,
    require,
    require_root,
    rmdir_tree,
    unique_name,
    v1_controller_dir,
)
from nodetape.recorder.source import RecordContext
from nodetape.replay.command import run_replay
from nodetape.replay.sinks.cgroupfs import CgroupfsSink

import nodetape
from nodetape.tape.reader import open_tape

UNIFIED = CGROUP_ROOT / "unified"
pytestmark = pytest.mark.kernel
SOURCES = ["cgroup", "samples"]


def record(out: Path, cgroup_root: Path, seconds: float, workload) -> dict:
    ctx = RecordContext(cgroup_root=cgroup_root, interval_ns=250_000_000)
    manifest = record_during(out, SOURCES, ctx, seconds, workload)
    for s in SOURCES:
        assert manifest["sources"][s]["status"] == "stopped", manifest["sources"][s]
    return manifest


def wait_recording(out: Path, timeout: float = 10.0) -> None:
    """Until the recorder's sources are started (the manifest says so)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            m = json.loads((out / "manifest.json").read_text())
            if all(m["sources"].get(s, {}).get("status") == "active" for s in SOURCES):
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    raise AssertionError("second recorder did not start")


def lifecycle(tape: Path, name: str, hierarchy: str) -> list[tuple[str, str]]:
    rows = nodetape.open([tape]).sql("SELECT kind, container_id FROM cgroup_events WHERE kind IN ('created', 'removed') "
                           "AND container_id IS NOT NULL AND hierarchy = ? AND cgroup_path LIKE ? ORDER BY ts_ns, seq", [hierarchy, f"/{name}/%"]).to_pylist()
    return [(r["kind"], r["container_id"]) for r in rows]


def births(tape: Path, uids: list[str]) -> list[tuple[str, str]]:
    rows = nodetape.open([tape]).query("pod_births").to_pylist()
    return [(r["container_id"], r["stage"]) for r in rows if r["pod_uid"] in uids and r["container_id"]]


def test_recorded_burst_reenacted_into_a_folder_is_recorded_again_the_same(tmp_path):
    require_root()
    cpu = v1_controller_dir("cpu")
    require(cpu is not None, "no v1 cpu hierarchy")
    require(UNIFIED.is_dir(), "no cgroup2 hierarchy at /sys/fs/cgroup/unified (hybrid)")
    name = unique_name("nt-replay")
    uids = [str(uuid.uuid4()) for _ in range(3)]
    cids = [uuid.uuid4().hex + uuid.uuid4().hex for _ in range(3)]
    rels = [f"{name}/kubepods/burstable/pod{u}/{c}" for u, c in zip(uids, cids)]
    tops = [cpu / name, UNIFIED / name]
    for t in tops:
        t.mkdir()
    try:
        def burst():
            time.sleep(0.3)
            for rel in rels:  # kubelet order: pod cgroup, then its container, in every hierarchy
                for base in (cpu, UNIFIED):
                    d = base
                    for seg in rel.split("/"):
                        d = d / seg
                        if not d.exists():
                            d.mkdir()
                time.sleep(0.15)
            time.sleep(0.8)  # several sampling intervals, so samples of each container are recorded
            for rel in rels:
                for base in (cpu, UNIFIED):
                    (base / rel).rmdir()
                    (base / rel).parent.rmdir()
                time.sleep(0.1)

        m1 = record(tmp_path / "t1", CGROUP_ROOT, 2.4, burst)
    finally:
        for t in tops:
            rmdir_tree(t)
    t1 = tmp_path / "t1"
    first = lifecycle(t1, name, "unified")
    assert [c for k, c in first if k == "created"] == cids
    assert [c for k, c in first if k == "removed"] == cids
    assert lifecycle(t1, name, "cpu") == first

    # re-enact: the layout first (a recorder detects it at start), then the events at recorded pace
    into = tmp_path / "cg"
    CgroupfsSink(into, m1["cgroup"]).prepare()
    start = nodetape.open([t1]).sql("SELECT min(ts_ns) AS t FROM cgroup_events WHERE kind = 'created' AND cgroup_path LIKE ?", [f"/{name}/%"]).to_pylist()[0]["t"]
    codes = []

    def replayer():
        wait_recording(tmp_path / "t2")
        codes.append(run_replay(tapes=[str(t1)], into=into, from_=str(start - 200_000_000), cgroup=f"/{name}/*",
                                speed=1.0, stdout=io.StringIO()))

    m2 = record(tmp_path / "t2", into, 2.6, replayer)
    assert codes == [0]
    t2 = tmp_path / "t2"
    assert m2["cgroup"]["mode"] == "hybrid" and open_tape(t2).manifest["cgroup"]["root"] == str(into)
    assert lifecycle(t2, name, "unified") == first
    assert lifecycle(t2, name, "cpu") == first
    b1 = births(t1, uids)
    assert b1 and births(t2, uids) == b1
    assert [c for c, _ in b1 if _ == "cgroup_created"] == cids
    # the re-enacted cpu files are read back by the samples source as recorded
    q = ("SELECT DISTINCT nr_periods, cpu_quota_usec, cpu_period_usec FROM cgroup_samples "
         "WHERE cgroup_path LIKE ? AND container_id IS NOT NULL AND nr_periods IS NOT NULL ORDER BY ALL")
    s2 = nodetape.open([t2]).sql(q, [f"/{name}/%"]).to_pylist()
    assert s2 and set(map(str, s2)) <= set(map(str, nodetape.open([t1]).sql(q, [f"/{name}/%"]).to_pylist()))
