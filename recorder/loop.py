"""The recorder loop: start sources, poll them on a tick, write what they return.

It knows sources only through the Source protocol (source.py; their lifetime is
lifecycle.py). Each time it wakes it polls the active sources that are due
(lifecycle.is_due: next poll reached, or a descriptor of theirs ready; a source
must bound its own poll; the loop measures each poll and its own lateness), appends the
batches to the tape writer, writes recorder_stats (stats.py) once per interval,
and flushes on the writer's schedule (the writer also retires parts outside a
retention window).

It installs no signal handler, so it runs on any thread: request_stop() stops
it cleanly (flush, close), request_snapshot() saves a snapshot of the current
window, into the OUT of a pending `nodetape snapshot` request file if there is
one, else into the snapshot folder. The CLI calls them on SIGINT/SIGTERM and
SIGUSR1; both take no lock (they only set a flag and write a byte to a self-pipe the
loop sleeps on, control.py), so a signal landing anywhere in the loop cannot
deadlock it. `--snapshot-on` triggers save one too, at most once per cooldown.

Once a second it compares CLOCK_REALTIME with CLOCK_BOOTTIME and stores a new
clock pair in the manifest when the wall clock stepped, so `ts` in views stays
right across an NTP step.

A full disk (DiskFull from the writer) stops the sources, closes what can be
closed and propagates: the CLI exits 1 with one line.
"""

from __future__ import annotations

import os
import select
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
from nodetape.tape.snapshot import process_start_ticks
from nodetape.tape.writer import DEFAULT_FLUSH_NS, DEFAULT_MAX_TOTAL_BYTES, DiskFull, TapeWriter
from nodetape.recorder.control import Control
from nodetape.recorder.snapshots import SnapshotTaking
from nodetape.recorder.lifecycle import SourceState, poll_all, start_sources, stop_active
from nodetape.recorder.memory import Trimmer, trim
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


class Recorder(SnapshotTaking):
    def __init__(self, opts: RecordOptions):
        self.opts = opts
        self.ctx = opts.ctx
        self.states: list[SourceState] = []
        self.writer: TapeWriter | None = None
        self.compactor: Compactor | None = None
        self.start_ns = 0
        self.rows: dict[str, int] = {}
        # stop/snapshot flags and the loop's self-pipe, safe in signal handlers (control.py): a stop
        # or a snapshot request wakes the loop at once; a source with rows (ctx.wake) at its next tick
        self.control = Control()
        self._poller: select.epoll | None = None
        self._poller_fds: list[int] | None = None
        self._ready: set[int] | None = None  # the fds the last wait reported (None: poll every source)
        self.ctx.wake = self.control.wake
        self._trigger_fired: str | None = None
        self._last_auto_snapshot: int | None = None
        self.snapshots: list[dict] = []
        self.max_lag_ns = 0  # how late the loop's tick ran, since the last stats row
        self.pusher = None
        self._trimmer = Trimmer()

    # -- control -------------------------------------------------------------
    # from any thread or a signal handler: they take no lock (control.py)
    def request_stop(self, *_args) -> None:
        self.control.request_stop()

    def request_snapshot(self, *_args) -> None:
        self.control.request_snapshot()

    def wake(self) -> None:
        """Wake the loop from any thread or a signal handler (a source has rows: ctx.wake)."""
        self.control.wake()

    def _close_poller(self) -> None:
        if self._poller is not None:
            self._poller.close()
            self._poller, self._poller_fds = None, None

    @property
    def stopping(self) -> bool:
        return self.control.stop

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

    def run(self) -> dict:
        try:
            return self._run()
        finally:
            self._close_poller()
            self.control.close()

    def _run(self) -> dict:
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
            trim()  # what compiling freed (memory.py)
            self._sync_manifest_sources()
            self.writer.write_manifest()
            self._loop()
        except DiskFull as e:
            failure = e
        finally:
            self._close_poller()
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
        self._trimmer.maybe(boottime_ns())

    def _loop(self) -> None:
        deadline = self.start_ns + self.opts.duration_ns if self.opts.duration_ns else None
        grid: dict[str, int] | None = None  # the loop's timers: on the sampled sources' grid (_next_tick)
        interval, flush_ns = self.ctx.interval_ns, self.opts.flush_interval_ns
        planned = self.start_ns
        while not self.control.stop:
            now = boottime_ns()
            if deadline is not None and now >= deadline:
                break
            self.max_lag_ns = max(self.max_lag_ns, now - planned)
            poll_all(self.states, now, self._write, self._ready)
            if grid is None:  # the first pass: BaseSource.due() starts every sampled source's grid here too
                grid = dict.fromkeys(("stats", "clock", "flush", "progress"), now)
            if now >= grid["stats"]:
                self._write([("recorder_stats", self._stats_batch(now))])
                grid["stats"] = _next_tick(grid["stats"], now, interval)
            if now >= grid["clock"]:
                self._check_clock()
                grid["clock"] = _next_tick(grid["clock"], now, CLOCK_CHECK_NS)
            if self.control.take_snapshot():
                self._handle_snapshot_requests()
            if self._trigger_fired is not None:
                self._maybe_auto_snapshot(now)
            if now >= grid["flush"] or self.writer.due():
                self._flush()
                grid["flush"] = _next_tick(grid["flush"], now, flush_ns)
            if self.opts.progress and now >= grid["progress"]:
                self.opts.progress(self)
                grid["progress"] = _next_tick(grid["progress"], now, 1_000_000_000)
            timers = [grid["stats"], grid["clock"], grid["flush"], boottime_ns() + self.writer.due_in_ns()]
            if self.opts.progress:
                timers.append(grid["progress"])
            if deadline is not None:
                timers.append(deadline)
            planned = self._sleep(now, min(timers))
        time.sleep(0)

    def _sleep(self, polled_ns: int, until_ns: int) -> int:
        """Sleep until the earliest work (the loop's timers, each source's next poll, a source's fd
        or wake-up), never polling again within a tick of the last poll; returns the planned time.

        One sleep per pass: an epoll wait on the self-pipe and the sources' fds until the planned
        time; only when something comes within the tick does it sleep again, on the self-pipe alone,
        until the tick. A source without next_poll_ns is polled every tick. A stop or snapshot
        request wakes it at once.
        """
        tick_end = polled_ns + self.opts.tick_ns
        fds: list[int] = []
        self._ready = set()
        for st in self.states:
            if st.status != "active":
                continue
            nxt = getattr(st.source, "next_poll_ns", None)
            due = nxt() if nxt is not None else None
            until_ns = min(until_ns, tick_end if due is None else due)
            wait_fds = getattr(st.source, "wait_fds", None)
            if wait_fds is not None:
                fds += wait_fds()
        planned = max(until_ns, tick_end)
        control = self.control
        if control.stop or control.snapshot:
            return boottime_ns()
        left = planned - boottime_ns()
        if left <= 0:
            return boottime_ns()  # the pass overran the tick: lag is measured from here
        if self._poller_fds != fds:
            self._close_poller()
            # edge-triggered: a ring buffer's fd reports the producer's forced wake-ups
            # only, not every record that waits below its threshold
            self._poller = select.epoll()
            self._poller.register(control.fd, select.EPOLLIN)
            for fd in fds:
                self._poller.register(fd, select.EPOLLIN | select.EPOLLET)
            self._poller_fds = fds
        events = self._poller.poll(-(-left // 1_000_000) / 1e3)
        if not events:
            return planned
        self._ready = {fd for fd, _ in events}
        control.drain()
        if boottime_ns() < tick_end:
            # within the tick of the last poll: wait for the tick (a stop or snapshot request ends it)
            requested, _ = control.wait_requests(tick_end)
            return boottime_ns() if requested else tick_end
        return min(planned, boottime_ns())


def _next_tick(due_ns: int, now_ns: int, period_ns: int) -> int:
    """The next time on the grid `due_ns + k * period_ns` after `now_ns` (whole periods missed are
    skipped, as BaseSource.due does): timers on one grid come due at the same pass, one wake-up."""
    return due_ns + ((now_ns - due_ns) // period_ns + 1) * period_ns
