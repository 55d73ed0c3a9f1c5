"""The recorder loop: start sources, poll them on a tick, write what they return.

It knows sources only through the Source protocol (source.py). Every tick it
polls each active source once (a source must bound its own poll), appends the
batches to the tape writer, writes recorder_stats once per interval, and
flushes on the writer's schedule. SIGINT and SIGTERM stop it cleanly.
"""

from __future__ import annotations

import os
import resource
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import hostinfo
from ..clock import boottime_ns, clock_pair
from ..errors import SourceUnavailable, UserError
from ..manifest import new_manifest
from ..schemas import SCHEMA_VERSION, batch
from ..tape_writer import DEFAULT_FLUSH_NS, TapeWriter
from .registry import load_source_class
from .source import RecordContext

DEFAULT_TICK_NS = 100_000_000


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _cpu_usec() -> int:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return int((ru.ru_utime + ru.ru_stime) * 1_000_000)


@dataclass
class SourceState:
    name: str
    source: object | None
    status: str  # 'active', 'unavailable', 'failed', 'stopped'
    reason: str | None = None
    tables: tuple[str, ...] = ()
    start_ns: int | None = None
    end_ns: int | None = None

    def to_json(self) -> dict:
        st = getattr(self.source, "stats", None)
        return {
            "status": self.status,
            "reason": self.reason,
            "tables": list(self.tables),
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "events": st.events if st else 0,
            "dropped": st.dropped if st else 0,
            "drop_reason": st.drop_reason if st else None,
        }


@dataclass
class RecordOptions:
    out: Path
    sources: list[str]
    ctx: RecordContext
    duration_ns: int | None = None
    flush_interval_ns: int = DEFAULT_FLUSH_NS
    tick_ns: int = DEFAULT_TICK_NS
    # called about once a second with the recorder, for live progress
    progress: Callable[[Recorder], None] | None = None
    extra_manifest: dict = field(default_factory=dict)


class Recorder:
    def __init__(self, opts: RecordOptions):
        self.opts = opts
        self.ctx = opts.ctx
        self.states: list[SourceState] = []
        self._stop = threading.Event()
        self.writer: TapeWriter | None = None
        self.start_ns = 0
        self.rows: dict[str, int] = {}

    # -- control -------------------------------------------------------------
    def request_stop(self, *_args) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- setup ---------------------------------------------------------------
    def _open_tape(self) -> TapeWriter:
        out = self.opts.out
        if out.exists() and any(out.iterdir()):
            raise UserError(f"{out}: output folder exists and is not empty (choose a new OUT)", str(out))
        layout = self.ctx.layout
        manifest = new_manifest(
            host=hostinfo.host_facts(str(self.ctx.proc_root)),
            clock_pair=clock_pair(),
            cgroup=layout.to_json(),
            options={
                "sources": self.opts.sources,
                "interval_ns": self.ctx.interval_ns,
                "flush_interval_ns": self.opts.flush_interval_ns,
                "duration_ns": self.opts.duration_ns,
                "cgroup_root": str(self.ctx.cgroup_root),
                "proc_root": str(self.ctx.proc_root),
                **self.opts.extra_manifest,
            },
            schema_version=SCHEMA_VERSION,
        )
        return TapeWriter(out, manifest, flush_interval_ns=self.opts.flush_interval_ns)

    def _start_sources(self) -> None:
        for name in self.opts.sources:
            st = SourceState(name, None, "unavailable")
            self.states.append(st)
            try:
                cls = load_source_class(name)
                st.tables = tuple(cls.tables)
                src = cls()
                src.probe(self.ctx)
                initial = src.start(self.ctx)
            except SourceUnavailable as e:
                st.reason = e.reason
                continue
            except Exception as e:  # a broken source must not take the others down
                st.status, st.reason = "failed", f"{type(e).__name__}: {e}"
                continue
            st.source, st.status, st.start_ns = src, "active", boottime_ns()
            self._write(initial)

    # -- running -------------------------------------------------------------
    def _write(self, batches) -> None:
        for table, b in batches:
            if b.num_rows:
                self.writer.append(table, b)
                self.rows[table] = self.rows.get(table, 0) + b.num_rows

    def _poll_all(self, now_ns: int) -> None:
        for st in self.states:
            if st.status != "active":
                continue
            try:
                self._write(st.source.poll(now_ns))
            except Exception as e:
                st.status, st.reason, st.end_ns = "failed", f"{type(e).__name__}: {e}", boottime_ns()
                self._stop_source(st)

    def _stop_source(self, st: SourceState) -> None:
        try:
            self._write(st.source.stop())
        except Exception as e:
            st.reason = (st.reason or "") + f"; stop failed: {type(e).__name__}: {e}"

    def _stats_batch(self, now_ns: int):
        cols: dict[str, list] = {k: [] for k in ("ts_ns", "source", "events", "dropped", "drop_reason",
                                                  "lag_ns", "recorder_cpu_usec", "recorder_rss_bytes")}
        for st in self.states:
            if st.source is None:
                continue
            s = st.source.stats
            for k, v in (("ts_ns", now_ns), ("source", st.name), ("events", s.events), ("dropped", s.dropped),
                         ("drop_reason", s.drop_reason), ("lag_ns", s.lag_ns),
                         ("recorder_cpu_usec", None), ("recorder_rss_bytes", None)):
                cols[k].append(v)
        for k, v in (("ts_ns", now_ns), ("source", "recorder"), ("events", sum(self.rows.values())),
                     ("dropped", None), ("drop_reason", None), ("lag_ns", None),
                     ("recorder_cpu_usec", _cpu_usec()), ("recorder_rss_bytes", _rss_bytes())):
            cols[k].append(v)
        return batch("recorder_stats", cols)

    def _sync_manifest_sources(self) -> None:
        self.writer.manifest["sources"] = {st.name: st.to_json() for st in self.states}

    def run(self) -> dict:
        self.writer = self._open_tape()
        self.start_ns = self.writer.manifest["start_ns"]
        old = {s: signal.signal(s, self.request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._start_sources()
            self._sync_manifest_sources()
            self.writer.write_manifest()
            self._loop()
        finally:
            for st in self.states:
                if st.status == "active":
                    self._stop_source(st)
                    st.status, st.end_ns = "stopped", boottime_ns()
            end = boottime_ns()
            self._write([("recorder_stats", self._stats_batch(end))])
            self._sync_manifest_sources()
            self.writer.close(end)
            for s, h in old.items():
                signal.signal(s, h)
        return self.writer.manifest

    def _loop(self) -> None:
        tick = self.opts.tick_ns
        deadline = self.start_ns + self.opts.duration_ns if self.opts.duration_ns else None
        next_stats = next_progress = self.start_ns
        while not self._stop.is_set():
            now = boottime_ns()
            if deadline is not None and now >= deadline:
                break
            self._poll_all(now)
            if now >= next_stats:
                self._write([("recorder_stats", self._stats_batch(now))])
                next_stats = now + self.ctx.interval_ns
            if self.writer.due():
                self._sync_manifest_sources()
                self.writer.flush()
            if self.opts.progress and now >= next_progress:
                self.opts.progress(self)
                next_progress = now + 1_000_000_000
            sleep_ns = tick - (boottime_ns() - now)
            if deadline is not None:
                sleep_ns = min(sleep_ns, deadline - boottime_ns())
            if sleep_ns > 0:
                self._stop.wait(sleep_ns / 1e9)
        time.sleep(0)
