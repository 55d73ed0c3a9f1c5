"""The recorder loop: start sources, poll them on a tick, write what they return.

It knows sources only through the Source protocol (source.py; their lifetime is
lifecycle.py). Every tick it polls each active source once (a source must bound
its own poll; the loop measures each poll and its own lateness), appends the
batches to the tape writer, writes recorder_stats (stats.py) once per interval,
and flushes on the writer's schedule (the writer also retires parts outside a
retention window).

It installs no signal handler, so it runs on any thread: request_stop() stops
it cleanly (flush, close), request_snapshot() saves a snapshot of the current
window, into the OUT of a pending `nodetape snapshot` request file if there is
one, else into the snapshot folder. The CLI calls them on SIGINT/SIGTERM and
SIGUSR1. `--snapshot-on` triggers save one too, at most once per cooldown.

Once a second it compares CLOCK_REALTIME with CLOCK_BOOTTIME and stores a new
clock pair in the manifest when the wall clock stepped, so `ts` in views stays
right across an NTP step.

A full disk (DiskFull from the writer) stops the sources, closes what can be
closed and propagates: the CLI exits 1 with one line.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nodetape.core import hostinfo
from nodetape.core.clock import boottime_ns, clock_pair
from nodetape.core.errors import UserError
from nodetape.schemas import SCHEMA_VERSION
from nodetape.tape.compact import Compactor, Policy
from nodetape.tape.format import Manifest
from nodetape.tape.fs import atomic_write_json
from nodetape.tape.snapshot import REQUEST_PREFIX, RESULT_PREFIX, default_snapshot_path, process_start_ticks
from nodetape.tape.writer import DEFAULT_FLUSH_NS, DEFAULT_MAX_TOTAL_BYTES, DiskFull, TapeWriter
from nodetape.recorder.lifecycle import SourceState, poll_all, start_sources, stop_active, trim_heap
from nodetape.recorder.source import RecordContext
from nodetape.recorder.stats import stats_batch
from nodetape.recorder.triggers import Trigger, fired

DEFAULT_TICK_NS = 100_000_000
DEFAULT_SNAPSHOT_COOLDOWN_NS = 300_000_000_000
CLOCK_CHECK_NS = 1_000_000_000


# how long a stopping recorder waits for the store to take its last parts
PUSH_FINISH_S = 10.0


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
    # flight-recorder mode: keep only this window / this many bytes of parts
    retain_ns: int | None = None
    max_tape_bytes: int | None = None
    max_buffer_bytes: int | None = None
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES
    snapshot_on: list[Trigger] = field(default_factory=list)
    snapshot_dir: Path | None = None
    snapshot_cooldown_ns: int = DEFAULT_SNAPSHOT_COOLDOWN_NS
    push_store: str | None = None  # --push STORE: sealed parts go to a fleet store (store/pusher.py)
    host_label: str | None = None  # --host NAME: the tape's host label (a DaemonSet passes the node's name)
    # merge small parts in the background (nodetape/tape/compact.py)
    compact: bool = True


class Recorder:
    def __init__(self, opts: RecordOptions):
        self.opts = opts
        self.ctx = opts.ctx
        self.states: list[SourceState] = []
        self._stop = threading.Event()
        self.writer: TapeWriter | None = None
        self.compactor: Compactor | None = None
        self.start_ns = 0
        self.rows: dict[str, int] = {}
        self._snapshot_wanted = threading.Event()
        # the loop sleeps on this: a stop or a snapshot request wakes it at once
        self._wake = threading.Event()
        self._trigger_fired: str | None = None
        self._last_auto_snapshot: int | None = None
        self.snapshots: list[dict] = []
        self.max_lag_ns = 0  # how late the loop's tick ran, since the last stats row
        self.pusher = None

    # -- control -------------------------------------------------------------
    def request_stop(self, *_args) -> None:
        self._stop.set()
        self._wake.set()

    def request_snapshot(self, *_args) -> None:
        self._snapshot_wanted.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- setup ---------------------------------------------------------------
    def _open_tape(self) -> TapeWriter:
        out = self.opts.out
        try:
            not_empty = out.exists() and (not out.is_dir() or any(out.iterdir()))
        except OSError as e:
            raise UserError(f"{out}: cannot use as the tape folder: {e.strerror}", str(out)) from None
        if not_empty:
            raise UserError(f"{out}: output folder exists and is not empty (choose a new OUT)", str(out))
        layout = self.ctx.layout
        host = hostinfo.host_facts(str(self.ctx.proc_root))
        if self.opts.host_label is not None:  # the label rows and store partitions carry; the kernel's name kept
            host = {**host, "hostname": self.opts.host_label, "uname_hostname": host["hostname"]}
        options = {
            "sources": self.opts.sources,
            "interval_ns": self.ctx.interval_ns,
            "flush_interval_ns": self.opts.flush_interval_ns,
            "duration_ns": self.opts.duration_ns,
            "cgroup_root": str(self.ctx.cgroup_root),
            "proc_root": str(self.ctx.proc_root),
            **self.opts.extra_manifest,
        }
        if self.opts.snapshot_on:
            options["snapshot_on"] = [t.spec for t in self.opts.snapshot_on]
        manifest = Manifest.new(
            host=host,
            clock_pair=clock_pair(),
            cgroup=layout.to_json(),
            options=options,
            schema_version=SCHEMA_VERSION,
            # who writes this tape: `nodetape snapshot` signals it only after checking
            # boot id, start time, exe and command line (tape/snapshot.py)
            recorder={"pid": os.getpid(), "start_ticks": process_start_ticks(os.getpid()),
                      "boot_id": host.get("boot_id")},
        )
        kw = {}
        if self.opts.max_buffer_bytes:
            kw["max_buffer_bytes"] = self.opts.max_buffer_bytes
        try:
            return TapeWriter(out, manifest, flush_interval_ns=self.opts.flush_interval_ns,
                              max_total_bytes=self.opts.max_total_bytes, retain_ns=self.opts.retain_ns,
                              max_tape_bytes=self.opts.max_tape_bytes, **kw)
        except FileExistsError:
            raise UserError(f"{out}: output folder exists and is not empty (choose a new OUT)", str(out)) from None
        except DiskFull:
            raise
        except OSError as e:
            hint = " (choose a folder this user can write)" if isinstance(e, PermissionError) else ""
            raise UserError(f"{out}: cannot create the tape: {e.strerror or e}{hint}", str(out)) from None

    # -- running -------------------------------------------------------------
    def _write(self, batches) -> None:
        triggers = self.opts.snapshot_on
        for table, b in batches:
            if b.num_rows:
                if triggers and self._trigger_fired is None:
                    for t in triggers:
                        if fired(t, table, b):
                            self._trigger_fired = t.label
                            break
                self.writer.append(table, b)
                self.rows[table] = self.rows.get(table, 0) + b.num_rows

    def _stats_batch(self, now_ns: int):
        b = stats_batch(now_ns, self.states, self.writer, sum(self.rows.values()), self.max_lag_ns,
                        self.pusher.stats_json() if self.pusher else None)
        self.max_lag_ns = 0
        return b

    def _sync_manifest_sources(self) -> None:
        # rows and drops per table: the writer's own drops by table, and a source's drops on
        # the first table it writes (where a multi-table source loses, it cannot say which)
        drops = {t: dict(d) for t, d in self.writer.dropped.items()}
        for st in self.states:
            s = st.source.stats if st.source is not None else None
            if s is not None and s.dropped:
                d = drops.setdefault(st.source.tables[0], {})
                key = f"{st.name}: {s.drop_reason or 'dropped'}"
                d[key] = d.get(key, 0) + s.dropped
        self.writer.set_sources({st.name: st.to_json() for st in self.states}, drops, self.snapshots)
        if self.pusher is not None:
            self.writer.manifest.push = self.pusher.stats_json()

    # -- snapshots -------------------------------------------------------------
    def _snapshot(self, out: Path, reason: str) -> Path:
        self._sync_manifest_sources()
        path = self.writer.snapshot(out, reason)
        if self.pusher is not None:
            self.pusher.snapshot(path)
        self.snapshots.append({"path": str(path), "reason": reason, "taken_ns": boottime_ns()})
        return path

    def _handle_snapshot_requests(self) -> None:
        """Answer `nodetape snapshot` request files; with none, a SIGUSR1 snapshot into the snapshot folder."""
        self._snapshot_wanted.clear()
        tape = self.opts.out
        requests = sorted(p for p in tape.iterdir() if p.name.startswith(REQUEST_PREFIX))
        for req in requests:
            rid = req.name[len(REQUEST_PREFIX):]
            answer: dict
            try:
                out = Path(json.loads(req.read_text())["out"])
                answer = {"out": str(self._snapshot(out, "request"))}
            except DiskFull:
                raise
            except Exception as e:  # a bad request must not stop the recording
                answer = {"error": f"{type(e).__name__}: {e}"}
            req.unlink(missing_ok=True)
            try:
                atomic_write_json(tape / f"{RESULT_PREFIX}{rid}", answer)
            except OSError:
                pass
        if not requests:
            self._try_snapshot(default_snapshot_path(tape, self.opts.snapshot_dir, "sigusr1"), "sigusr1")

    def _try_snapshot(self, out: Path, reason: str) -> None:
        try:
            self._snapshot(out, reason)
        except DiskFull:
            raise
        except Exception as e:  # recording goes on; the failure is in the manifest
            self.snapshots.append({"path": str(out), "reason": reason, "taken_ns": boottime_ns(),
                                   "error": f"{type(e).__name__}: {e}"})

    def _maybe_auto_snapshot(self, now: int) -> None:
        label, self._trigger_fired = self._trigger_fired, None
        if label is None:
            return
        if self._last_auto_snapshot is not None and now - self._last_auto_snapshot < self.opts.snapshot_cooldown_ns:
            return  # rate limit: one incident, one snapshot
        self._last_auto_snapshot = now
        self._try_snapshot(default_snapshot_path(self.opts.out, self.opts.snapshot_dir, label), label)

    def run(self) -> dict:
        self.writer = self._open_tape()
        self.start_ns = self.writer.manifest.start_ns
        if self.opts.push_store:
            from nodetape.store.pusher import Pusher

            self.pusher = Pusher(self.opts.push_store, self.opts.out)
            self.writer.on_sealed = self.pusher.sealed
        failure: BaseException | None = None
        # a pushing recorder's parts go to the store whole, as sealed: merging them here would give the
        # node's tape other part names than the store's (compaction of a store is not built yet)
        if self.opts.compact and not self.opts.push_store:
            self.compactor = Compactor(self.writer, Policy.for_window(self.opts.flush_interval_ns, self.opts.retain_ns))
        try:
            start_sources(self.opts.sources, self.ctx, self.states, self._write)
            trim_heap()
            self._sync_manifest_sources()
            self.writer.write_manifest()
            self._loop()
        except DiskFull as e:
            failure = e
        finally:
            stop_active(self.states, self._write)
            if self.compactor is not None:
                self.compactor.stop(install=failure is None)
            end = boottime_ns()
            try:
                self._write([("recorder_stats", self._stats_batch(end))])
                self._sync_manifest_sources()
                self.writer.close(end)
            except DiskFull as e:
                failure = failure or e
            self._finish_push()
        if failure is not None:
            raise failure
        return self.writer.manifest

    def _finish_push(self) -> None:
        """The last parts and the closed manifest to the store (bounded wait), the counters into the manifest."""
        if self.pusher is None:
            return
        self.pusher.finish(PUSH_FINISH_S)
        self.writer.manifest.push = self.pusher.stats_json()
        try:
            atomic_write_json(self.opts.out / "manifest.json", self.writer.manifest.to_dict())
        except OSError:
            pass  # the tape's manifest without the final counters; the store has the parts

    def _check_clock(self) -> None:
        keep = boottime_ns() - self.opts.retain_ns if self.opts.retain_ns else None
        self.writer.add_clock_pair(clock_pair(), keep_from_ns=keep)

    def _flush(self) -> None:
        """The periodic flush; finished merges are installed first, so its one manifest rewrite
        names them, and new ones are planned on the parts it leaves (compact.py)."""
        self._sync_manifest_sources()
        c = self.compactor
        if c is not None:
            c.install_done()
        self.writer.flush()
        if c is not None:
            c.schedule()

    def _loop(self) -> None:
        tick = self.opts.tick_ns
        deadline = self.start_ns + self.opts.duration_ns if self.opts.duration_ns else None
        next_stats = next_progress = next_clock = self.start_ns
        planned = self.start_ns
        wake = self._wake
        while not self._stop.is_set():
            now = boottime_ns()
            if deadline is not None and now >= deadline:
                break
            self.max_lag_ns = max(self.max_lag_ns, now - planned)
            poll_all(self.states, now, self._write)
            if now >= next_stats:
                self._write([("recorder_stats", self._stats_batch(now))])
                next_stats = now + self.ctx.interval_ns
            if now >= next_clock:
                self._check_clock()
                next_clock = now + CLOCK_CHECK_NS
            if self._snapshot_wanted.is_set():
                self._handle_snapshot_requests()
            if self._trigger_fired is not None:
                self._maybe_auto_snapshot(now)
            if self.writer.due():
                self._flush()
            if self.opts.progress and now >= next_progress:
                self.opts.progress(self)
                next_progress = now + 1_000_000_000
            planned = now + tick
            sleep_ns = tick - (boottime_ns() - now)
            if deadline is not None:
                sleep_ns = min(sleep_ns, deadline - boottime_ns())
            if sleep_ns > 0:
                wake.wait(sleep_ns / 1e9)
                wake.clear()
            else:
                planned = boottime_ns()  # overran the tick: lag is measured from here
        time.sleep(0)
