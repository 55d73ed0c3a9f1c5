"""Row filters of a replay (`--cgroup GLOB`, `--pod UID`), evaluated per Arrow batch.

Each filter is computed once per distinct value (the string columns are
dictionary-encoded, so a batch of 10k rows has a handful of distinct paths)
and broadcast to the rows through the dictionary indices: no per-row Python.

How a row names its cgroup depends on its table:
- `cgroup_path` (cgroup_events, cgroup_samples, processes' seen rows);
- `scope` (psi_samples, psi_events): 'system' or a cgroup2 path;
- only `cgroup_id` (syscall tables, file_opens, packet_drops, processes): the
  cgroup2 id, resolved to paths through the tape's own cgroup rows of the
  'unified' hierarchy (v1 ids are inodes of other filesystems and may collide).
  The map is kept per tape: two nodes' cgroup ids are unrelated numbers, and the
  same id may name /kubepods/... on one and /system.slice/... on the other.
Tables with none of these (mounts, net_interfaces, ...) have no rows for a
cgroup or pod filter.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..recorder.k8s import identity, pod_uid_of
from ..schemas import Table

UNIFIED = "unified"


def _path_col(t: Table) -> str | None:
    names = t.column_names
    if "cgroup_path" in names:
        return "cgroup_path"
    if "scope" in names:
        return "scope"
    return None


def table_can_match(t: Table) -> bool:
    return _path_col(t) is not None or "cgroup_id" in t.column_names


@dataclass
class RowFilter:
    cgroup_glob: str | None = None
    pod_uid: str | None = None
    # per tape index: cgroup2 id -> paths and pod uid, for tables that only carry cgroup_id
    id_paths: dict[int, dict[int, set[str]]] = field(default_factory=dict)
    id_pods: dict[int, dict[int, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.pod_uid:
            self.pod_uid = pod_uid_of(self.pod_uid)  # matches the rows' canonical form

    @property
    def active(self) -> bool:
        return bool(self.cgroup_glob or self.pod_uid)

    def _glob_path(self, path: str | None) -> bool:
        return path is not None and fnmatch.fnmatchcase(path, self.cgroup_glob)

    def _glob_id(self, paths: dict[int, set[str]]):
        return lambda cid: cid is not None and any(fnmatch.fnmatchcase(p, self.cgroup_glob) for p in paths.get(cid, ()))

    def _pod_path(self, path: str | None) -> bool:
        return path is not None and identity(path).pod_uid == self.pod_uid

    def _pod_id(self, pods: dict[int, str]):
        return lambda cid: cid is not None and pods.get(cid) == self.pod_uid

    def _pod_value(self, pod: str | None) -> bool:
        return pod == self.pod_uid

    def mask(self, t: Table, batch: pa.RecordBatch, tape_idx: int = 0) -> pa.Array | None:
        """Boolean mask of the rows of tape number `tape_idx` to keep; None keeps every row.

        A row is judged by its most specific identity: the pod_uid column where
        the recorder set it, else its path, else (path NULL, e.g. fork rows) its id.
        """
        if not self.active:
            return None
        names = batch.schema.names
        pcol = _path_col(t)
        path = batch.column(pcol) if pcol in names else None
        cid = batch.column("cgroup_id") if "cgroup_id" in names else None
        if path is None and cid is None:
            return pa.array([False] * batch.num_rows, type=pa.bool_())
        m = None
        if self.cgroup_glob:
            ids = self._glob_id(self.id_paths.get(tape_idx, {}))
            m = _layered([(path, self._glob_path), (cid, ids)], batch.num_rows)
        if self.pod_uid:
            pod = batch.column("pod_uid") if "pod_uid" in names else None
            ids = self._pod_id(self.id_pods.get(tape_idx, {}))
            pm = _layered([(pod, self._pod_value), (path, self._pod_path), (cid, ids)], batch.num_rows)
            m = pm if m is None else pc.and_(m, pm)
        return m


def _layered(levels, n: int) -> pa.Array:
    """The first level whose column is non-NULL on a row decides that row."""
    out = pa.array([False] * n, type=pa.bool_())
    for arr, pred in reversed([(a, p) for a, p in levels if a is not None]):
        out = pc.if_else(pc.is_valid(arr), _by_value(arr, pred), out)
    return out


def _by_value(arr: pa.Array, pred) -> pa.Array:
    """Evaluate pred once per distinct value of arr, broadcast to rows; NULL -> pred(None)."""
    if not pa.types.is_dictionary(arr.type):
        arr = pc.dictionary_encode(arr)
    keep = pa.array([bool(pred(v)) for v in arr.dictionary.to_pylist()], type=pa.bool_())
    out = keep.take(arr.indices) if len(keep) else pa.nulls(len(arr), pa.bool_())
    return pc.fill_null(out, bool(pred(None)))


def build_id_maps(parts: list) -> tuple[dict[int, set[str]], dict[int, str]]:
    """cgroup2 id -> paths, pod uid, from cgroup_events/cgroup_samples parts (unified rows only).

    Memory is bounded by the number of distinct cgroups, read one part at a time.
    """
    id_paths: dict[int, set[str]] = {}
    id_pods: dict[int, str] = {}
    for part in parts:
        have = set(pq.read_schema(part).names)
        cols = [c for c in ("hierarchy", "cgroup_path", "cgroup_id", "pod_uid") if c in have]
        if not {"hierarchy", "cgroup_path", "cgroup_id"} <= set(cols):
            continue
        tbl = pq.read_table(part, columns=cols)
        tbl = tbl.filter(pc.equal(pc.cast(tbl.column("hierarchy"), pa.string()), UNIFIED))
        tbl = pa.table({c: pc.cast(tbl.column(c), pa.string() if c != "cgroup_id" else pa.uint64()) for c in cols})
        uniq = tbl.group_by([c for c in cols if c != "hierarchy"]).aggregate([])
        d = uniq.to_pydict()
        for i, cid in enumerate(d["cgroup_id"]):
            if cid is None:
                continue
            path = d["cgroup_path"][i]
            if path is not None:
                id_paths.setdefault(cid, set()).add(path)
            pod = d.get("pod_uid", [None] * len(d["cgroup_id"]))[i] or identity(path or "").pod_uid
            if pod:
                id_pods[cid] = pod
    return id_paths, id_pods
