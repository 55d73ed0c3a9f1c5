"""cgroup-tp: cgroup lifecycle from the cgroup tracepoints (cgroup_events, source 'ebpf').

The nanosecond truth beside inotify's view: mkdir, rmdir, release (the last
reference gone) and attach_task, with the kernel's hierarchy id and cgroup id.
Hierarchy ids become the names tables.py uses: 0 is cgroup2 ('unified'); v1
ids map to their controllers through /proc/self/cgroup (which, unlike
/proc/cgroups, also lists named hierarchies such as name=systemd).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ....schemas import batch
from ...k8s import identity_columns
from ...kernelfs.cgroupfs import UNIFIED
from ...source import Batches, RecordContext
from .stream import RawStreamSource, arrow_cols, cstr

PATH_LEN = 256
RECORD = np.dtype([
    ("ts", "<u8"), ("id", "<u8"), ("kind", "<u4"), ("root", "<i4"), ("level", "<i4"), ("pid", "<i4"),
    ("comm", "S16"), ("path", f"S{PATH_LEN}"),
])
# the kind names inotify rows use, so both sources line up in queries
KINDS = np.array([None, "created", "removed", "release", "attach"], dtype=object)


def parse_proc_cgroup(text: str) -> dict[int, list[str]]:
    """/proc/PID/cgroup lines 'ID:controllers:path' -> {ID: [controllers]}."""
    out: dict[int, list[str]] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and parts[0].isdigit():
            out[int(parts[0])] = [c for c in parts[1].split(",") if c]
    return out


def hierarchy_names(proc_cgroup: dict[int, list[str]], controllers: dict[str, str]) -> dict[int, str]:
    """Kernel hierarchy id -> hierarchy name as in tables.py ('unified', or the v1
    mount name holding the controller, e.g. 'cpu', 'memory', 'systemd')."""
    names = {0: UNIFIED}
    for hid, ctls in proc_cgroup.items():
        if hid == 0:
            continue
        for c in ctls:
            key = c.removeprefix("name=")
            if c in controllers:
                names[hid] = controllers[c]
                break
            if c.startswith("name="):
                names[hid] = controllers.get(key, key)
                break
        else:
            if ctls:
                names[hid] = ",".join(ctls)
    return names


class CgroupTracepointSource(RawStreamSource):
    name = "cgroup-tp"
    tables = ("cgroup_events",)
    summary = "cgroup mkdir/rmdir/release/attach from cgroup tracepoints, with kernel ids and nanosecond times"
    program = "cgroup_tp.bpf.c"
    tracepoints = ("cgroup:cgroup_mkdir", "cgroup:cgroup_rmdir", "cgroup:cgroup_release",
                   "cgroup:cgroup_attach_task")
    record = RECORD
    ringbuf_pages = 128

    def cflags(self, ctx: RecordContext) -> list[str]:
        return [*super().cflags(ctx), f"-DPATH_LEN={PATH_LEN}"]

    def _after_start(self, ctx: RecordContext) -> None:
        self._refresh_names()

    def _refresh_names(self) -> None:
        layout = self.ctx.layout
        ctls = dict(layout.controllers)
        for h in layout.hierarchies:
            if h != UNIFIED and h.startswith("name="):
                ctls[h] = h
        try:
            text = Path(self.ctx.proc_root, "self", "cgroup").read_text()
        except OSError:
            text = ""
        self.hier_names = hierarchy_names(parse_proc_cgroup(text), ctls)

    def decode(self, r: np.ndarray) -> Batches:
        roots = r["root"]
        if not set(np.unique(roots).tolist()) <= set(self.hier_names):
            self._refresh_names()  # a hierarchy mounted after start
        hnames = self.hier_names
        attach = r["kind"] == 4
        paths = cstr(r["path"])
        cols = {
            "ts_ns": r["ts"].astype(np.int64),
            "source": np.full(len(r), "ebpf", dtype=object),
            "kind": KINDS[np.clip(r["kind"], 0, 4)],
            "hierarchy": [hnames.get(x, str(x)) for x in roots.tolist()],
            "cgroup_path": paths,
            "cgroup_id": r["id"],
            "hierarchy_id": roots,
            "pid": np.ma.masked_array(r["pid"], ~attach),
            "comm": np.where(attach, np.array(cstr(r["comm"]), dtype=object), None),
            # cgroup events are rare and identity() is cached per path
            **identity_columns(paths),
        }
        return [("cgroup_events", batch("cgroup_events", arrow_cols(cols)))]
