"""runtime: pods and containers by name, from the OCI specs container runtimes keep on disk.

When a Kubernetes container's cgroup appears (the shared inotify tree,
cgroup_tree.py: no polling of the cgroup tree), the source reads that
container's OCI spec (config.json) from its runtime's state folder, no socket
needed, and writes one `containers` row with the CRI annotations the runtime
put there:

- containerd (CRI plugin): STATE/io.containerd.runtime.v2.task/<namespace>/<id>/config.json,
  annotations io.kubernetes.cri.{container-type, sandbox-name, sandbox-namespace,
  sandbox-uid, sandbox-id, container-name, image-name}; STATE defaults to /run/containerd;
- CRI-O: STORAGE/overlay-containers/<id>/userdata/config.json, annotations
  io.kubernetes.{pod.name, pod.namespace, pod.uid, container.name} and
  io.kubernetes.cri-o.{ContainerType, SandboxID, ImageName}; STORAGE defaults
  to /run/containers/storage.

Option `runtime_state` (`--runtime-state DIR[,DIR]`) names the folders instead;
each is tried with both layouts. The container id is the cgroup's last path
segment as k8s.py parses it; it is used as a file name only when it is a plain
name. Annotation values are untrusted: only strings, cut at 1,024 characters,
go into the table, and nothing is ever opened or resolved from them.

A spec is written before the runtime creates the cgroup, so it is normally
there at once: it is read on the tree's reader thread as the cgroup appears
(a failed start removes the bundle within milliseconds), up to
MAX_IMMEDIATE_PER_S a second; the rest, and a spec not found yet, is looked up
by the loop's thread once per interval for RETRY_NS (10 s), then given up (a container not run by a CRI runtime,
e.g. `runc run`, has no spec: it gets no row, and that is not a loss).
The loop polls the source only when it has work (next_poll_ns): rows or noted
containers (the reader thread wakes the loop for the first of them), or a retry
that is due; an idle node's loop does not wake for it.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections import OrderedDict, deque

from ...schemas import batch
from ..cgroup_tree import release_shared, shared_tree
from ..k8s import identity
from ..source import NEVER, BaseSource, Batches, RecordContext, SourceUnavailable, no_hierarchy

DEFAULT_STATE_DIRS = ("/run/containerd", "/run/containers/storage")
RETRY_NS = 10_000_000_000
# bounds (DESIGN.md principle 4): spec lookups per poll (each a few stat/open calls), and
# containers waiting for their spec (a storm of non-CRI cgroups), beyond which they are counted as dropped
MAX_LOOKUPS_PER_POLL = 1000
MAX_IMMEDIATE_PER_S = 200  # specs read on the inotify thread as the cgroup appears (the rest: by the loop)
MAX_WAITING = 50_000
MAX_SPEC_BYTES = 4 << 20
MAX_VALUE_CHARS = 1024
_REMEMBERED = 100_000  # container ids already written (bounded: oldest forgotten first)
_PLAIN_ID = re.compile(r"^[0-9A-Za-z_][0-9A-Za-z_.\-]{0,254}$")
_COLS = ("ts_ns", "seq", "source", "container_id", "container_type", "pod_uid", "pod_name", "pod_namespace",
         "container_name", "image", "sandbox_id", "runtime", "cgroup_path")

# column -> annotation key, per runtime
ANNOTATIONS = {
    "containerd": {
        "container_type": "io.kubernetes.cri.container-type",
        "pod_name": "io.kubernetes.cri.sandbox-name",
        "pod_namespace": "io.kubernetes.cri.sandbox-namespace",
        "pod_uid": "io.kubernetes.cri.sandbox-uid",
        "sandbox_id": "io.kubernetes.cri.sandbox-id",
        "container_name": "io.kubernetes.cri.container-name",
        "image": "io.kubernetes.cri.image-name",
    },
    "cri-o": {
        "container_type": "io.kubernetes.cri-o.ContainerType",
        "pod_name": "io.kubernetes.pod.name",
        "pod_namespace": "io.kubernetes.pod.namespace",
        "pod_uid": "io.kubernetes.pod.uid",
        "sandbox_id": "io.kubernetes.cri-o.SandboxID",
        "container_name": "io.kubernetes.container.name",
        "image": "io.kubernetes.cri-o.ImageName",
    },
}


def parse_spec(data: bytes, runtime: str) -> dict[str, str | None] | None:
    """The table's columns from an OCI spec's annotations; None when it is not a JSON object."""
    try:
        spec = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(spec, dict):
        return None
    ann = spec.get("annotations")
    ann = ann if isinstance(ann, dict) else {}
    out: dict[str, str | None] = {}
    for col, key in ANNOTATIONS[runtime].items():
        v = ann.get(key)
        out[col] = v[:MAX_VALUE_CHARS] if isinstance(v, str) and v else None
    return out


def spec_paths(state_dir: str, container_id: str) -> list[tuple[str, str]]:
    """(runtime, config.json path) candidates for a container id under one state folder."""
    out = []
    tasks = f"{state_dir}/io.containerd.runtime.v2.task"
    try:
        namespaces = sorted(os.listdir(tasks))
    except OSError:
        namespaces = []
    out += [("containerd", f"{tasks}/{ns}/{container_id}/config.json") for ns in namespaces]
    out.append(("cri-o", f"{state_dir}/overlay-containers/{container_id}/userdata/config.json"))
    return out


def _read_limited(path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            data = f.read(MAX_SPEC_BYTES + 1)
    except OSError:
        return None
    return data if len(data) <= MAX_SPEC_BYTES else None


def find_spec(state_dirs: list[str], container_id: str) -> tuple[str, dict] | None:
    """(runtime, columns) of the first spec found for container_id, else None."""
    if not _PLAIN_ID.match(container_id):
        return None
    for d in state_dirs:
        for runtime, path in spec_paths(d, container_id):
            data = _read_limited(path)
            if data is not None:
                cols = parse_spec(data, runtime)
                if cols is not None:
                    return runtime, cols
    return None


class RuntimeSource(BaseSource):
    name = "runtime"
    tables = ("containers",)
    summary = "pods and containers by name (CRI annotations of the runtime's OCI specs), read when their cgroup appears"
    needs = "a CRI runtime's state folder (containerd /run/containerd, CRI-O /run/containers/storage; --runtime-state) and the cgroup inotify tree"

    def __init__(self) -> None:
        super().__init__()
        self._tree = None
        self._lock = threading.Lock()  # the tree's reader thread and the loop's thread share what follows
        self._noted: deque[tuple[int, str, str, str]] = deque()  # (ts, source, rel, id) for the loop's thread
        self._noted_ids: set[str] = set()  # ids noted or waiting
        self._budget_second, self._budget = -1, 0
        self._waiting: OrderedDict[str, tuple[int, str, str, int]] = OrderedDict()  # id -> (ts, source, rel, first try)
        self._done: OrderedDict[str, None] = OrderedDict()
        self._rows: list[tuple] = []
        self._seq = 0

    def _dirs(self, ctx: RecordContext) -> list[str]:
        given = ctx.options.get("runtime_state")
        if isinstance(given, str):
            given = [d for d in given.split(",") if d]
        return [str(d) for d in (given or DEFAULT_STATE_DIRS)]

    def probe(self, ctx: RecordContext) -> None:
        if not ctx.layout.hierarchies:
            raise no_hierarchy(ctx.cgroup_root)
        dirs = self._dirs(ctx)
        if not any(os.path.isdir(d) for d in dirs):
            raise SourceUnavailable(f"no container runtime state folder ({', '.join(dirs)}); "
                                    "give the runtime's with --runtime-state DIR")

    def start(self, ctx: RecordContext) -> Batches:
        super().start(ctx)
        self.state_dirs = self._dirs(ctx)
        try:
            self._tree = shared_tree(ctx)
        except OSError as e:
            raise SourceUnavailable(f"cannot watch cgroups with inotify: {e.strerror or e}") from None
        self._tree.start_thread()  # timely ts_ns: events are read as they come
        now = ctx.clock()
        for (hier, rel), ino in sorted(self._tree.subscribe(self._on_event).items()):
            self._on_event(now, "seen", hier, rel, None, ino, "scan")
        return self._take(now)

    def _on_event(self, ts, kind, hier, rel, name, ino, source) -> None:
        # called by the tree under its lock, on its reader thread: a new container's spec is read
        # right here (a failed start removes its bundle within milliseconds), within a budget per
        # second; past it, and for specs not there yet, the loop's thread looks again (_take)
        if kind not in ("created", "seen"):
            return
        cid = identity(rel).container_id
        if not cid:
            return
        src = "inotify" if kind == "created" else "scan"
        with self._lock:
            if cid in self._done or cid in self._noted_ids:
                return
            if not self._rows and not self._noted and self.ctx is not None:
                self.ctx.wake()  # the first since the last poll: the loop takes it at its next tick
            second = ts // 1_000_000_000
            if second != self._budget_second:
                self._budget_second, self._budget = second, MAX_IMMEDIATE_PER_S
            immediate = self._budget > 0
            self._budget -= 1
            if not immediate:
                self._noted_ids.add(cid)
                self._noted.append((ts, src, rel, cid))
                return
        found = find_spec(self.state_dirs, cid)
        with self._lock:
            if found is None:
                self._noted_ids.add(cid)
                self._noted.append((ts, src, rel, cid))
            else:
                self._row(ts, src, cid, rel, found)

    def _row(self, ts: int, source: str, cid: str, rel: str, found: tuple[str, dict]) -> None:
        """Write the row (holding self._lock)."""
        self._remember(cid)
        runtime, c = found
        self._rows.append((ts, self._seq, source, cid, c["container_type"], c["pod_uid"], c["pod_name"],
                           c["pod_namespace"], c["container_name"], c["image"], c["sandbox_id"], runtime, rel))
        self._seq += 1

    def _take(self, now: int) -> Batches:
        with self._lock:
            while self._noted:
                ts, source, rel, cid = self._noted.popleft()
                if len(self._waiting) >= MAX_WAITING:
                    self._noted_ids.discard(cid)
                    self.stats.dropped += 1
                    self.stats.drop_reason = "waiting_full"
                    continue
                self._waiting[cid] = (ts, source, rel, now, now)
        looked = 0
        for cid, (ts, source, rel, first, due) in list(self._waiting.items()):
            if due > now:
                continue
            if looked >= MAX_LOOKUPS_PER_POLL:
                break  # the rest at the next poll
            looked += 1
            found = find_spec(self.state_dirs, cid)
            if found is None and now - first <= RETRY_NS:
                self._waiting[cid] = (ts, source, rel, first, now + self.ctx.interval_ns)
                continue
            del self._waiting[cid]
            with self._lock:
                self._noted_ids.discard(cid)
                if found is not None:
                    self._row(ts, source, cid, rel, found)
                else:
                    self._remember(cid)  # not a CRI runtime's container (or gone): no row, not again
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return []
        return self.counted([("containers", batch("containers", dict(zip(_COLS, map(list, zip(*rows))))))])

    def _remember(self, cid: str) -> None:
        self._done[cid] = None
        while len(self._done) > _REMEMBERED:
            self._done.popitem(last=False)

    def next_poll_ns(self) -> int | None:
        """At the next tick while rows or containers noted by the tree's thread wait (it wakes the
        loop for them), at the earliest retry of a spec not there yet, else never: nothing else to do."""
        if self._rows or self._noted:
            return 0
        if self._waiting:
            return min(w[4] for w in self._waiting.values())
        return NEVER

    def poll(self, now_ns: int) -> Batches:
        if self._tree is not None:
            self._tree.drain()  # with no cgroup source in the recording, nobody else reads the tree
        return self._take(now_ns)

    def stop(self) -> Batches:
        out = self.poll(self.ctx.clock()) if self._tree is not None else []
        if self._tree is not None:
            self._tree.unsubscribe(self._on_event)
            release_shared(self.ctx, self._tree)
            self._tree = None
        return out
