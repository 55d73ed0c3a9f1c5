"""`nodetape export TAPE --perfetto OUT.pftrace`: a tape as a Perfetto trace.

What goes where (every value comes from the tape's own named queries and tables,
read through nodetape.api; nothing is read from Parquet files directly):

  pod <name or uid>                    one group per pod in `pod_births`
    container <name or id> | pod cgroup   one group per container (and the pod's own cgroup)
      birth                            one slice per `pod_births` row: the stage, lasting
                                       until the next observed stage (the last is an instant)
      throttled %, CPU used (cores),   `throttle_timeline` (1s windows) at each window's start
      quota (cores)
      memory.current                   `cgroup_samples.memory_current`, bytes
      PSI <resource> some|full avg10 % `psi_samples` of the cgroup's scope
  cgroup <path>  (under "cgroups")     the same counters for every other cgroup
  node                                 system-wide PSI
  processes and threads                one track per thread of `processes`, named by what it
                                       exec'd: a slice per program it ran (from its fork or
                                       first sight, then from each exec, to its exit or the
                                       tape's end), and every row (fork, exec, exit, seen)
                                       as an instant

Times: `ts_ns` columns go in as recorded (CLOCK_BOOTTIME). The named queries
return wall-clock TIMESTAMPs (microseconds); those are turned back into
CLOCK_BOOTTIME with the manifest's clock pairs, so birth and window times are
exact to the microsecond.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

from nodetape.core.errors import UserError
from .trace import TraceWriter, load_protos

THROTTLE_WINDOW = "1s"
# (column of throttle_timeline, track name, unit, scale)
THROTTLE_COUNTERS = (
    ("throttle_pct", "throttled %", "%", 1.0),
    ("cpu_usage_ms", "CPU used (cores)", "cores", 1e-3),  # ms used per 1s window -> cores
    ("quota_cores", "quota (cores)", "cores", 1.0),
)
PSI_COUNTERS = (("some_avg10", "some"), ("full_avg10", "full"))


def _rows(table) -> list[dict]:
    return table.to_pylist()


def collect(db) -> dict:
    """The rows the trace is made of, through the library's queries over one opened tape."""
    return {
        "births": _rows(db.query("pod_births")),
        "throttle": _rows(db.query("throttle_timeline", window=THROTTLE_WINDOW)),
        "memory": _rows(db.sql("SELECT cgroup_path, hierarchy, ts_ns, memory_current FROM cgroup_samples "
                               "WHERE memory_current IS NOT NULL ORDER BY cgroup_path, hierarchy, ts_ns")),
        "psi": _rows(db.sql("SELECT scope, resource, ts_ns, some_avg10, full_avg10 FROM psi_samples "
                            "ORDER BY scope, resource, ts_ns")),
        "processes": _rows(db.sql("SELECT ts_ns, seq, source, event, pid, tgid, ppid, comm, filename, "
                                  "exit_code FROM processes ORDER BY ts_ns, seq")),
    }


class _Clock:
    """Wall-clock TIMESTAMPs of the views back to CLOCK_BOOTTIME ns, with the tape's clock pairs."""

    def __init__(self, pairs: list[tuple[int, int]]):
        self.pairs = pairs

    EPOCH = datetime(1970, 1, 1)

    def boot_ns(self, wall) -> int:
        if wall is None:
            raise ValueError("a query row without a time")
        ns = (wall.replace(tzinfo=None) - self.EPOCH) // timedelta(microseconds=1) * 1000  # exact, no float
        boot = ns - self.pairs[0][1]
        for b, o in self.pairs:  # the view used the nearest pair at or before the row
            if ns - o + 999 >= b:  # the view cut the row's time to the microsecond
                boot = ns - o
        return boot


def _clock(tape) -> tuple[list[tuple[int, int]], int]:
    """An opened tape's clock pairs, and where it ends (its end, else its last flush, else its start)."""
    m = tape.manifest
    return tape.clock_pairs, int(m.get("end_ns") or m.get("last_flush_ns") or m.get("start_ns") or 0)


class _Layout:
    """Which group track each cgroup's counters belong to."""

    def __init__(self, w: TraceWriter, births: list[dict]):
        self.w = w
        self.by_path: dict[str, int] = {}
        self.pods: dict[str, int] = {}
        for r in births:
            self.container(r)

    def container(self, r: dict) -> int:
        pod_uid, cid = r["pod_uid"], r.get("container_id") or ""
        if pod_uid not in self.pods:
            label = r.get("pod_name") or pod_uid
            self.pods[pod_uid] = self.w.group(("pod", pod_uid), f"pod {label}", rank=0)
        if cid:
            label = f"container {r.get('container_name') or cid[:12]}"
        else:
            label = "pod cgroup"
        g = self.w.group(("container", pod_uid, cid), label, self.pods[pod_uid], rank=1 if cid else 0)
        self.by_path.setdefault(r["cgroup_path"], g)
        return g

    def cgroup(self, path: str) -> int:
        g = self.by_path.get(path)
        if g is None:
            top = self.w.group(("cgroups",), "cgroups", rank=1)
            g = self.by_path[path] = self.w.group(("cgroup", path), f"cgroup {path}", top)
        return g


def _births(w: TraceWriter, layout: _Layout, clock: _Clock, births: list[dict]) -> None:
    by_container: dict[tuple, list[dict]] = {}
    for r in births:
        by_container.setdefault((r["pod_uid"], r.get("container_id") or ""), []).append(r)
    for (pod_uid, cid), rows in by_container.items():
        parent = layout.container(rows[0])
        track = w.group(("birth", pod_uid, cid), "birth", parent, rank=0)
        stages = sorted(((clock.boot_ns(r["ts"]), i, r) for i, r in enumerate(rows)), key=lambda s: s[:2])
        for k, (ts, _, r) in enumerate(stages):
            args = {"detail": r.get("detail"), "offset_ms": r.get("offset_ms"), "cgroup_path": r["cgroup_path"]}
            if k + 1 < len(stages):
                w.slice(track, ts, stages[k + 1][0], r["stage"], args)
            else:
                w.instant(track, ts, r["stage"], args)


def _counters(w: TraceWriter, layout: _Layout, clock: _Clock, data: dict) -> None:
    for r in data["throttle"]:
        g = layout.cgroup(r["cgroup_path"])
        ts = clock.boot_ns(r["window_start"])
        for col, name, unit, scale in THROTTLE_COUNTERS:
            if r[col] is not None:
                w.value(w.counter((col, r["cgroup_path"]), name, g, unit), ts, float(r[col]) * scale)
    hier = {}
    for r in data["memory"]:
        hier.setdefault(r["cgroup_path"], set()).add(r["hierarchy"])
    for r in data["memory"]:
        path, h = r["cgroup_path"], r["hierarchy"]
        name = "memory.current" if len(hier[path]) == 1 else f"memory.current ({h})"
        t = w.counter(("memory", path, h), name, layout.cgroup(path), bytes_=True)
        w.value(t, r["ts_ns"], r["memory_current"])
    node = None
    for r in data["psi"]:
        scope = r["scope"]
        if scope.startswith("/"):
            g = layout.cgroup(scope)
        else:
            node = node or w.group(("node",), "node", rank=0)
            g = node
        for col, kind in PSI_COUNTERS:
            if r[col] is not None:
                t = w.counter(("psi", scope, r["resource"], kind), f"PSI {r['resource']} {kind} avg10 %", g, "%")
                w.value(t, r["ts_ns"], r[col])


def _generations(rows: list[dict]) -> list[tuple[tuple, tuple, dict]]:
    """Each row with its thread key (pid, generation) and process key (tgid, generation):
    a pid that comes back (fork or seen) after its exit is a new thread."""
    generation: dict[int, int] = {}
    exited: set[int] = set()
    out = []
    for r in rows:
        pid = r["pid"]
        tgid = r["tgid"] if r["tgid"] is not None else pid
        if pid in exited and r["event"] in ("fork", "seen"):
            exited.discard(pid)
            generation[pid] = generation.get(pid, 0) + 1
        out.append(((pid, generation.get(pid, 0)), (tgid, generation.get(tgid, 0)), r))
        if r["event"] == "exit":
            exited.add(pid)
    return out


def _exec_name(r: dict) -> str | None:
    return os.path.basename(r["filename"]) if r["event"] == "exec" and r["filename"] else None


def _names(keyed) -> tuple[dict, dict]:
    """Thread and process names: the file last exec'd, else the comm first seen."""
    threads: dict[tuple, str] = {}
    procs: dict[tuple, str] = {}
    for tkey, pkey, r in keyed:
        name = _exec_name(r)
        for names, key in ((threads, tkey), (procs, pkey)):
            if name:
                names[key] = name
            elif r["comm"] and key not in names:
                names[key] = r["comm"]
    return threads, procs


def _processes(w: TraceWriter, rows: list[dict], end_ns: int) -> None:
    """A track per thread: a slice per exec'd program (fork or first sight, then each exec,
    to the exit or the tape's end), named by it; every row an instant inside it."""
    keyed = _generations(rows)
    thread_names, proc_names = _names(keyed)
    open_: dict[tuple, int] = {}  # thread key -> its track, while a slice is open
    for tkey, pkey, r in keyed:
        w.process(pkey, pkey[0], proc_names.get(pkey))
        track = w.thread(tkey, pkey[0], tkey[0], thread_names.get(tkey))
        ts, ev = r["ts_ns"], r["event"]
        if ev == "exec":
            if tkey in open_:
                w.end(track, ts)
            w.begin(track, ts, _exec_name(r) or r["comm"] or "exec")
            open_[tkey] = track
        elif tkey not in open_ and ev != "exit":
            w.begin(track, ts, r["comm"] or str(tkey[0]))
            open_[tkey] = track
        label = ev
        if _exec_name(r):
            label = f"exec {_exec_name(r)}"
        elif ev == "exit" and r["exit_code"] is not None:
            label = f"exit {r['exit_code']}"
        w.instant(track, ts, label, {"ppid": r["ppid"], "comm": r["comm"], "filename": r["filename"],
                                     "exit_code": r["exit_code"], "source": r["source"]})
        if ev == "exit" and tkey in open_:
            w.end(open_.pop(tkey), ts)
    last = max((r["ts_ns"] for r in rows), default=end_ns)
    for track in open_.values():  # alive when the tape ended
        w.end(track, max(end_ns, last))


def _check_out(out: Path) -> None:
    if out.is_dir():
        raise UserError(f"--perfetto {out}: is a folder (give a file name, e.g. trace.pftrace)", str(out))
    if not out.parent.is_dir():
        raise UserError(f"--perfetto {out}: folder {out.parent} does not exist", str(out))


def export_perfetto(tape: str | os.PathLike, out: str | os.PathLike) -> dict:
    """Write the Perfetto trace of `tape` to `out`; returns counts of what went in, and the file size."""
    tape, out = Path(tape), Path(out)
    pb = load_protos()
    _check_out(out)
    from nodetape import api

    with api.open(tape) as db:
        pairs, end_ns = _clock(db.tapes[0])
        data = collect(db)
    w = TraceWriter(pb)
    clock = _Clock(pairs)
    try:
        layout = _Layout(w, data["births"])
        _births(w, layout, clock, data["births"])
        _counters(w, layout, clock, data)
        _processes(w, data["processes"], end_ns)
    except ValueError as e:  # a damaged tape: say so, naming it
        raise UserError(f"{tape}: cannot export: {e}", str(tape)) from None
    size = w.write(out, pairs)
    return {**w.counts, "bytes": size, "pods": len(layout.pods)}
