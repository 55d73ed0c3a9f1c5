"""Build small tapes with the real TapeWriter for replay tests (rows are given, not recorded)."""

from __future__ import annotations

import json

from pathlib import Path

from nodetape.tape.format import new_manifest
from nodetape.schemas import SCHEMA_VERSION, batch
from nodetape.tape.writer import TapeWriter

BOOT0 = 1_000_000_000_000  # boottime of the tape's start
OFFSET = 1_700_000_000_000_000_000 - BOOT0  # wall = boot + OFFSET

HYBRID = {
    "root": "/sys/fs/cgroup",
    "mode": "hybrid",
    "hierarchies": {"cpu": "/sys/fs/cgroup/cpu", "cpuacct": "/sys/fs/cgroup/cpuacct",
                    "memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids",
                    "unified": "/sys/fs/cgroup/unified"},
    "controllers": {"cpu": "cpu", "cpuacct": "cpuacct", "memory": "memory", "pids": "pids"},
}
V2 = {"root": "/sys/fs/cgroup", "mode": "v2", "hierarchies": {"unified": "/sys/fs/cgroup"}, "controllers": {}}


def make_tape(path: Path, parts: list[list[tuple[str, dict]]], *, cgroup=HYBRID, hostname="node-a",
              start_ns=BOOT0, end_ns=None, offset_ns=OFFSET) -> Path:
    """parts: a list of flushes, each a list of (table, columns) appended before that flush."""
    m = new_manifest(host={"hostname": hostname}, clock_pair=(start_ns, start_ns + offset_ns), cgroup=HYBRID,
                     options={}, schema_version=SCHEMA_VERSION)
    w = TapeWriter(path, m)
    for flush in parts:
        for table, cols in flush:
            w.append(table, batch(table, cols))
        w.flush()
    w.close(end_ns if end_ns is not None else start_ns + 60_000_000_000)
    if cgroup is not HYBRID:  # a layout the writer would refuse (a hostile tape) goes in afterwards
        data = json.loads((path / "manifest.json").read_text())
        data["cgroup"] = cgroup
        (path / "manifest.json").write_text(json.dumps(data))
    return path


def cg_event(ts, kind, path, hierarchy="unified", cgroup_id=None, pid=None, **k8s):
    return {"ts_ns": [ts], "source": ["inotify"], "kind": [kind], "hierarchy": [hierarchy],
            "cgroup_path": [path], "cgroup_id": [cgroup_id], "pid": [pid],
            **{k: [v] for k, v in k8s.items()}}


def rows(table_cols: list[dict]) -> dict:
    """Concatenate single-row column dicts into one columns dict."""
    out: dict = {}
    keys = []
    for c in table_cols:
        for k in c:
            if k not in keys:
                keys.append(k)
    for k in keys:
        out[k] = [v for c in table_cols for v in c.get(k, [None])]
    return out
