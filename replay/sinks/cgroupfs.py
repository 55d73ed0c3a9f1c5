"""`replay --into DIR`: re-enact the recorded cgroup tree and its files in a folder.

The folder gets the layout of the recorded root (manifest `cgroup`): v1
hierarchies as DIR/<hierarchy>/..., cgroup2 as DIR/unified/... on a hybrid node
or DIR/... on a pure v2 node, with the marker files layout detection reads
(recorder/kernelfs/cgroupfs.py: `cgroup.controllers` in a cgroup2 root,
`cgroup.procs` in v1 roots). Then, at each event's (paced) time:

- cgroup_events seen/created: mkdir; removed: the files, then the directory,
  go (children first if the recording missed their removal);
  populated/unpopulated/frozen/thawed rewrite cgroup.events; oom, oom_kill,
  memory_high, memory_max add their count to memory.events (v2) or
  memory.oom_control's oom_kill (v1); attach moves the pid in cgroup.procs;
- cgroup_samples rewrite cpu.stat, cpu.max or cpu.cfs_quota_us/cfs_period_us,
  cpuacct.usage, memory.current/max or memory.usage_in_bytes/limit_in_bytes,
  pids.current, in the hierarchy that holds each controller;
- psi_samples rewrite <resource>.pressure of the scope ('system' goes to the
  cgroup2 root, whose files the kernel also keeps).

Files are written in the kernel's formats, in place (same inode: tools that keep
a descriptor open and pread it, like the recorder, see the new value; inotify
watchers get IN_MODIFY). Only recorded values are written: a NULL column leaves
its line or file out, and cgroup.procs lists only pids the tape names
(attach rows), never invented ones. Parent directories are created on demand
when a row names a cgroup whose creation the recording did not see.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from nodetape.core.errors import UserError

UNIFIED = "unified"
# v1 memory.limit_in_bytes with no limit (PAGE_COUNTER_MAX pages of 4 KiB)
V1_NO_LIMIT = 9223372036854771712
TABLES = ("cgroup_events", "cgroup_samples", "psi_samples")


def write_in_place(path: Path, text: str) -> None:
    """Overwrite a file's content keeping its inode (create it if missing)."""
    data = text.encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        old = os.fstat(fd).st_size
        os.pwrite(fd, data, 0)
        if len(data) < old:
            os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def _psi_text(row: dict) -> str | None:
    out = []
    for kind in ("some", "full"):
        vals = [row.get(f"{kind}_avg10"), row.get(f"{kind}_avg60"), row.get(f"{kind}_avg300"), row.get(f"{kind}_total_usec")]
        if any(v is None for v in vals):
            continue
        out.append(f"{kind} avg10={vals[0]:.2f} avg60={vals[1]:.2f} avg300={vals[2]:.2f} total={vals[3]}\n")
    return "".join(out) or None


def _kv(pairs) -> str:
    return "".join(f"{k} {v}\n" for k, v in pairs if v is not None)


class CgroupfsSink:
    def __init__(self, root: Path, cgroup_manifest: dict):
        self.root = Path(root)
        mode = (cgroup_manifest or {}).get("mode")
        if mode not in ("v1", "v2", "hybrid"):
            raise UserError(f"--into: the tape records no cgroup layout (cgroup mode {mode!r})")
        self.mode = mode
        rec_root = Path(cgroup_manifest.get("root") or "/sys/fs/cgroup")
        self.hdirs: dict[str, Path] = {}
        for name, p in (cgroup_manifest.get("hierarchies") or {}).items():
            try:
                rel = Path(p).relative_to(rec_root)
            except ValueError:
                rel = Path("" if (name == UNIFIED and mode == "v2") else name)
            self.hdirs[name] = self.root / rel
        if mode == "v2":
            self.hdirs[UNIFIED] = self.root
        self.controllers: dict[str, str] = dict(cgroup_manifest.get("controllers") or {})
        self.removed: set[tuple[str, str]] = set()
        self.procs: dict[tuple[str, str], set[int]] = {}
        self.events: dict[tuple[str, str], dict[str, int]] = {}
        self.mem_events: dict[tuple[str, str], dict[str, int]] = {}
        # hierarchies the tape has lifecycle rows for; in the others, directories
        # exist only because samples named them, and go when the cgroup goes
        self.evented: set[str] = set()

    # -- layout ---------------------------------------------------------------
    def hierarchy_for(self, controller: str) -> str | None:
        if controller in self.controllers and self.controllers[controller] in self.hdirs:
            return self.controllers[controller]
        if self.mode == "v2":
            return UNIFIED
        return None

    def describe(self) -> str:
        """'hybrid cgroup layout (cpu, cpuacct, memory, pids, unified)', for messages."""
        return f"{self.mode} cgroup layout ({', '.join(sorted(self.hdirs))})"

    def prepare(self) -> None:
        """Create the hierarchy roots and their layout markers (idempotent)."""
        self.root.mkdir(parents=True, exist_ok=True)
        for name, d in self.hdirs.items():
            d.mkdir(parents=True, exist_ok=True)
            if name == UNIFIED:
                # pure v2: the cgroup2 root holds the controllers the files below
                # belong to; hybrid: they live in the v1 hierarchies, as recorded
                ctl = "cpu memory pids" if self.mode == "v2" else ""
                if not (d / "cgroup.controllers").exists():
                    write_in_place(d / "cgroup.controllers", ctl + "\n" if ctl else "")
            if not (d / "cgroup.procs").exists():
                write_in_place(d / "cgroup.procs", "")

    def _dir(self, hierarchy: str, path: str, create: bool = True) -> Path | None:
        base = self.hdirs.get(hierarchy)
        if base is None:
            return None
        key = (hierarchy, path)
        if key in self.removed:
            return None
        d = base / path.strip("/") if path.strip("/") else base
        if create and not d.is_dir():
            # mkdir one level at a time so inotify watchers see each parent
            parts = path.strip("/").split("/")
            cur = base
            for p in parts:
                cur = cur / p
                if not cur.is_dir():
                    cur.mkdir()
                    self._init_files(hierarchy, cur)
        return d

    def _init_files(self, hierarchy: str, d: Path) -> None:
        # the kernel creates a cgroup's files with its directory; their recorded
        # values come with the first sample, until then they are empty (not 0)
        write_in_place(d / "cgroup.procs", "")
        for name in self._controller_files(hierarchy):
            write_in_place(d / name, "")
        if hierarchy == UNIFIED:
            # a new cgroup is empty and not frozen (Documentation/admin-guide/cgroup-v2.rst)
            write_in_place(d / "cgroup.events", "populated 0\nfrozen 0\n")

    def _controller_files(self, hierarchy: str) -> list[str]:
        v2 = hierarchy == UNIFIED
        files = []
        if self.hierarchy_for("cpu") == hierarchy:
            files += ["cpu.stat", "cpu.max"] if v2 else ["cpu.stat", "cpu.cfs_quota_us", "cpu.cfs_period_us"]
        if not v2 and self.hierarchy_for("cpuacct") == hierarchy:
            files.append("cpuacct.usage")
        if self.hierarchy_for("memory") == hierarchy:
            files += ["memory.current", "memory.max"] if v2 else ["memory.usage_in_bytes", "memory.limit_in_bytes"]
        if self.hierarchy_for("pids") == hierarchy:
            files.append("pids.current")
        return files

    # -- events ---------------------------------------------------------------
    def write(self, table: str, row: dict) -> None:
        if table == "cgroup_events":
            self._event(row)
        elif table == "cgroup_samples":
            self._sample(row)
        elif table == "psi_samples":
            self._psi(row)

    def _event(self, row: dict) -> None:
        h, path, kind = row["hierarchy"], row["cgroup_path"], row["kind"]
        key = (h, path)
        if kind in ("seen", "created"):
            self.evented.add(h)
            self.removed.discard(key)
            self._dir(h, path)
        elif kind == "removed":
            # not 'release' (eBPF cgroup_release): the kernel frees a removed cgroup later, after
            # RCU, when a new cgroup of the same path may already exist (a pod made again)
            self.evented.add(h)
            self._remove(h, path)
            for other in self.hdirs:
                if other not in self.evented:
                    self._remove(other, path)
        elif kind in ("populated", "unpopulated", "frozen", "thawed"):
            d = self._dir(h, path)
            if d is None or h != UNIFIED:
                return
            st = self.events.setdefault(key, {"populated": 0, "frozen": 0})
            field, value = {"populated": ("populated", 1), "unpopulated": ("populated", 0),
                            "frozen": ("frozen", 1), "thawed": ("frozen", 0)}[kind]
            st[field] = value
            write_in_place(d / "cgroup.events", _kv(st.items()))
        elif kind in ("oom", "oom_kill", "memory_high", "memory_max"):
            self._memory_event(row, kind)
        elif kind == "attach" and row.get("pid") is not None:
            for (oh, op), pids in self.procs.items():
                if oh == h and row["pid"] in pids and op != path:
                    pids.discard(row["pid"])
                    self._write_procs(oh, op)
            self.procs.setdefault(key, set()).add(row["pid"])
            self._write_procs(h, path)

    def _write_procs(self, h: str, path: str) -> None:
        d = self._dir(h, path)
        if d is not None:
            write_in_place(d / "cgroup.procs", "".join(f"{p}\n" for p in sorted(self.procs.get((h, path), ()))))

    def _memory_event(self, row: dict, kind: str) -> None:
        h = self.hierarchy_for("memory") or row["hierarchy"]
        d = self._dir(h, row["cgroup_path"])
        if d is None or row.get("count") is None:
            return
        st = self.mem_events.setdefault((h, row["cgroup_path"]), {})
        name = {"memory_high": "high", "memory_max": "max"}.get(kind, kind)
        st[name] = st.get(name, 0) + row["count"]
        if h == UNIFIED:
            order = ("low", "high", "max", "oom", "oom_kill", "oom_group_kill")
            write_in_place(d / "memory.events", _kv((k, st.get(k)) for k in order))
        elif "oom_kill" in st:
            write_in_place(d / "memory.oom_control", _kv([("oom_kill", st["oom_kill"])]))

    def _remove(self, h: str, path: str) -> None:
        d = self._dir(h, path, create=False)
        self.removed.add((h, path))
        if d is None or not d.is_dir() or d == self.hdirs.get(h):
            return
        # children first (cgroupfs refuses to remove a cgroup with children)
        for dirpath, dirnames, filenames in sorted(os.walk(d), key=lambda t: -t[0].count("/")):
            for f in filenames:
                os.unlink(os.path.join(dirpath, f))
            os.rmdir(dirpath)
        for k in [k for k in self.procs if k[0] == h and (k[1] == path or k[1].startswith(path.rstrip("/") + "/"))]:
            del self.procs[k]

    # -- samples --------------------------------------------------------------
    def _sample(self, row: dict) -> None:
        path = row["cgroup_path"]
        if (row["hierarchy"], path) in self.removed:
            return
        g = row.get
        h = self.hierarchy_for("cpu")
        cpu_vals = [g(k) for k in ("nr_periods", "nr_throttled", "throttled_usec", "cpu_period_usec")]
        if h == UNIFIED:
            cpu_vals.append(g("cpu_usage_usec"))
        if h is not None and any(v is not None for v in cpu_vals) and (d := self._dir(h, path)) is not None:
            if h == UNIFIED:
                stat = _kv([("usage_usec", g("cpu_usage_usec")), ("nr_periods", g("nr_periods")),
                            ("nr_throttled", g("nr_throttled")), ("throttled_usec", g("throttled_usec"))])
                if g("cpu_period_usec") is not None:
                    q = g("cpu_quota_usec")
                    write_in_place(d / "cpu.max", f"{'max' if q is None else q} {g('cpu_period_usec')}\n")
            else:
                tt = g("throttled_usec")
                stat = _kv([("nr_periods", g("nr_periods")), ("nr_throttled", g("nr_throttled")),
                            ("throttled_time", None if tt is None else tt * 1000)])
                if g("cpu_period_usec") is not None:
                    q = g("cpu_quota_usec")
                    write_in_place(d / "cpu.cfs_quota_us", f"{-1 if q is None else q}\n")
                    write_in_place(d / "cpu.cfs_period_us", f"{g('cpu_period_usec')}\n")
            if stat:
                write_in_place(d / "cpu.stat", stat)
        ha = self.hierarchy_for("cpuacct")
        if ha is not None and ha != UNIFIED and g("cpu_usage_usec") is not None and (d := self._dir(ha, path)) is not None:
            write_in_place(d / "cpuacct.usage", f"{g('cpu_usage_usec') * 1000}\n")
        hm = self.hierarchy_for("memory")
        cur, lim = g("memory_current"), g("memory_max")
        # a cgroup is made in a hierarchy only where the row has values from it:
        # rows of cgroups absent from the memory hierarchy have NULL there
        if hm is not None and (cur is not None or lim is not None) and (d := self._dir(hm, path)) is not None:
            if hm == UNIFIED:
                if cur is not None:
                    write_in_place(d / "memory.current", f"{cur}\n")
                if cur is not None or lim is not None:
                    write_in_place(d / "memory.max", f"{'max' if lim is None else lim}\n")
            else:
                if cur is not None:
                    write_in_place(d / "memory.usage_in_bytes", f"{cur}\n")
                if cur is not None or lim is not None:
                    write_in_place(d / "memory.limit_in_bytes", f"{V1_NO_LIMIT if lim is None else lim}\n")
        hp = self.hierarchy_for("pids")
        if hp is not None and g("pids_current") is not None and (d := self._dir(hp, path)) is not None:
            write_in_place(d / "pids.current", f"{g('pids_current')}\n")
        if g("nr_procs") == 0:
            # an empty cgroup is a recorded fact: its cgroup.procs is empty everywhere
            for hh in self.hdirs:
                if self.procs.get((hh, path)):
                    self.procs[(hh, path)].clear()
                    self._write_procs(hh, path)

    def _psi(self, row: dict) -> None:
        text = _psi_text(row)
        if text is None or UNIFIED not in self.hdirs:
            return
        scope = row["scope"]
        d = self.hdirs[UNIFIED] if scope in ("system", "/") else self._dir(UNIFIED, scope)
        if d is not None:
            write_in_place(d / f"{row['resource']}.pressure", text)

    def close(self) -> None:
        pass


def clear_into(root: Path) -> None:
    """Remove a re-enacted tree (tests and repeated runs)."""
    shutil.rmtree(root, ignore_errors=True)
