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

from pathlib import Path, PurePosixPath

from nodetape.core.errors import UserError
from ..confine import Beneath, Escape, components, is_cgroupfs_path, plain_name, shown, write_at

UNIFIED = "unified"
# v1 memory.limit_in_bytes with no limit (PAGE_COUNTER_MAX pages of 4 KiB)
V1_NO_LIMIT = 9223372036854771712
TABLES = ("cgroup_events", "cgroup_samples", "psi_samples")
Comps = tuple[str, ...]


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


def hierarchy_dirs(cgroup_manifest: dict) -> tuple[str, dict[str, Comps]]:
    """The tape's cgroup mode and each hierarchy's folder beneath the target, as components;
    UserError naming the manifest field that is missing or would escape the target."""
    mode = (cgroup_manifest or {}).get("mode")
    if mode not in ("v1", "v2", "hybrid"):
        raise UserError(f"--into: the tape records no cgroup layout (cgroup mode {shown(mode)})")
    root = cgroup_manifest.get("root") or "/sys/fs/cgroup"
    hier = cgroup_manifest.get("hierarchies") or {}
    ctl = cgroup_manifest.get("controllers") or {}
    if not isinstance(root, str) or not isinstance(hier, dict) or not isinstance(ctl, dict):
        raise UserError("--into: manifest field cgroup.root, cgroup.hierarchies or cgroup.controllers is malformed")
    dirs: dict[str, Comps] = {}
    for name, p in hier.items():
        try:
            if name != UNIFIED or mode != "v2":
                plain_name(name)
            if not isinstance(p, str):
                raise Escape("is not text")
            try:
                rel = str(PurePosixPath(p).relative_to(PurePosixPath(root)))
            except ValueError:
                rel = "" if (name == UNIFIED and mode == "v2") else name
            dirs[name] = components(rel)
        except Escape as e:
            raise UserError(f"--into: manifest cgroup.hierarchies {shown(name)} ({shown(p)}) {e}: "
                            "it would leave the target") from None
    if mode == "v2":
        dirs[UNIFIED] = ()
    return mode, dirs


class CgroupfsSink:
    def __init__(self, root: Path, cgroup_manifest: dict, *, allow_cgroupfs: bool = False):
        self.root = Path(root)
        self.mode, self.hdirs = hierarchy_dirs(cgroup_manifest)
        self.allow_cgroupfs = allow_cgroupfs
        self.controllers: dict[str, str] = {str(k): v for k, v in (cgroup_manifest.get("controllers") or {}).items()}
        self.fs: Beneath | None = None
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

    @property
    def on_cgroupfs(self) -> bool:
        """Writing into a real cgroup filesystem (--allow-cgroupfs): the kernel owns its files."""
        return self.fs is not None and self.fs.cgroupfs

    def prepare(self) -> None:
        """Create the hierarchy roots and their layout markers (idempotent)."""
        if is_cgroupfs_path(self.root) and not self.allow_cgroupfs:
            raise UserError(f"--into {self.root}: is on a real cgroup filesystem; re-enact into a plain folder "
                            "or pass --allow-cgroupfs to write the tape's own cgroups there", str(self.root))
        self.root.mkdir(parents=True, exist_ok=True)
        if self.fs is None:
            self.fs = Beneath(self.root, allow_cgroupfs=self.allow_cgroupfs)
        for comps in self.hdirs.values():
            self.fs.dir(comps)  # a hierarchy that exists on a cgroupfs mount is refused before any write
        for name, comps in self.hdirs.items():
            d = self.fs.dir(comps, create=True)
            if self.fs.on_cgroupfs(comps):
                continue  # the kernel's own root: never written
            if name == UNIFIED:
                # pure v2: the cgroup2 root holds the controllers the files below
                # belong to; hybrid: they live in the v1 hierarchies, as recorded
                ctl = "cpu memory pids" if self.mode == "v2" else ""
                if not self.fs.exists(comps, "cgroup.controllers"):
                    write_at(d, "cgroup.controllers", (ctl + "\n" if ctl else "").encode())
            if not self.fs.exists(comps, "cgroup.procs"):
                write_at(d, "cgroup.procs", b"")

    def _put(self, d: int, name: str, text: str) -> None:
        if self.on_cgroupfs:
            try:  # only files the kernel made and lets us write (cpu.max, ...); read-only ones stay the kernel's
                write_at(d, name, text.encode(), create=False, truncate=False)
            except OSError:
                pass
            return
        write_at(d, name, text.encode())

    def _dir(self, hierarchy: str, path: str, create: bool = True) -> int | None:
        base = self.hdirs.get(hierarchy)
        if base is None or (hierarchy, path) in self.removed:
            return None
        if self.fs is None:
            self.prepare()
        comps = base + components(path)
        return self.fs.dir(comps, create=create, on_create=lambda c, fd: self._init_files(hierarchy, fd))

    def _init_files(self, hierarchy: str, d: int) -> None:
        # the kernel creates a cgroup's files with its directory; their recorded
        # values come with the first sample, until then they are empty (not 0)
        if self.on_cgroupfs:
            return
        self._put(d, "cgroup.procs", "")
        for name in self._controller_files(hierarchy):
            self._put(d, name, "")
        if hierarchy == UNIFIED:
            # a new cgroup is empty and not frozen (Documentation/admin-guide/cgroup-v2.rst)
            self._put(d, "cgroup.events", "populated 0\nfrozen 0\n")

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
        if row.get("cgroup_path" if table != "psi_samples" else "scope") is None:
            return  # a row that names no cgroup (e.g. an eBPF event whose path was not resolved)
        try:
            if table == "cgroup_events":
                self._event(row)
            elif table == "cgroup_samples":
                self._sample(row)
            elif table == "psi_samples":
                self._psi(row)
        except Escape as e:  # the command validates first (guard.py); a direct API caller may not have
            raise UserError(f"--into: a {table} row names a path that {e}; it would leave the target") from None

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
            self._put(d, "cgroup.events", _kv(st.items()))
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
        if d is not None and not self.on_cgroupfs:  # a real cgroup.procs moves real processes: never
            self._put(d, "cgroup.procs", "".join(f"{p}\n" for p in sorted(self.procs.get((h, path), ()))))

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
            self._put(d, "memory.events", _kv((k, st.get(k)) for k in order))
        elif "oom_kill" in st:
            self._put(d, "memory.oom_control", _kv([("oom_kill", st["oom_kill"])]))

    def _remove(self, h: str, path: str) -> None:
        self.removed.add((h, path))
        base = self.hdirs.get(h)
        if base is None or not components(path):
            return  # a hierarchy root is never removed
        if self.fs is None:
            self.prepare()
        # children first (cgroupfs refuses to remove a cgroup with children; its files go with it)
        self.fs.remove_tree(base + components(path), unlink_files=not self.on_cgroupfs)
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
                    self._put(d, "cpu.max", f"{'max' if q is None else q} {g('cpu_period_usec')}\n")
            else:
                tt = g("throttled_usec")
                stat = _kv([("nr_periods", g("nr_periods")), ("nr_throttled", g("nr_throttled")),
                            ("throttled_time", None if tt is None else tt * 1000)])
                if g("cpu_period_usec") is not None:
                    q = g("cpu_quota_usec")
                    self._put(d, "cpu.cfs_quota_us", f"{-1 if q is None else q}\n")
                    self._put(d, "cpu.cfs_period_us", f"{g('cpu_period_usec')}\n")
            if stat:
                self._put(d, "cpu.stat", stat)
        ha = self.hierarchy_for("cpuacct")
        if ha is not None and ha != UNIFIED and g("cpu_usage_usec") is not None and (d := self._dir(ha, path)) is not None:
            self._put(d, "cpuacct.usage", f"{g('cpu_usage_usec') * 1000}\n")
        hm = self.hierarchy_for("memory")
        cur, lim = g("memory_current"), g("memory_max")
        # a cgroup is made in a hierarchy only where the row has values from it:
        # rows of cgroups absent from the memory hierarchy have NULL there
        if hm is not None and (cur is not None or lim is not None) and (d := self._dir(hm, path)) is not None:
            if hm == UNIFIED:
                if cur is not None:
                    self._put(d, "memory.current", f"{cur}\n")
                if cur is not None or lim is not None:
                    self._put(d, "memory.max", f"{'max' if lim is None else lim}\n")
            else:
                if cur is not None:
                    self._put(d, "memory.usage_in_bytes", f"{cur}\n")
                if cur is not None or lim is not None:
                    self._put(d, "memory.limit_in_bytes", f"{V1_NO_LIMIT if lim is None else lim}\n")
        hp = self.hierarchy_for("pids")
        if hp is not None and g("pids_current") is not None and (d := self._dir(hp, path)) is not None:
            self._put(d, "pids.current", f"{g('pids_current')}\n")
        if g("nr_procs") == 0:
            # an empty cgroup is a recorded fact: its cgroup.procs is empty everywhere
            for hh in self.hdirs:
                if self.procs.get((hh, path)):
                    self.procs[(hh, path)].clear()
                    self._write_procs(hh, path)

    def _psi(self, row: dict) -> None:
        text = _psi_text(row)
        if self.on_cgroupfs:
            return  # a real <resource>.pressure is the kernel's: a write there makes a PSI trigger
        if text is None or row.get("resource") is None or UNIFIED not in self.hdirs:
            return
        scope = row["scope"]
        if scope in ("system", "/"):
            d = self._dir(UNIFIED, "")
        else:
            d = self._dir(UNIFIED, scope)
        if d is not None:
            self._put(d, f"{plain_name(row['resource'])}.pressure", text)

    def close(self) -> None:
        if self.fs is not None:
            self.fs.close()
            self.fs = None
