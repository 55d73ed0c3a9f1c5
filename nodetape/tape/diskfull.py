"""The writer's disk-full escalation (writer.py's module doc says what happens, step by step).

A mixin of TapeWriter: it reads and changes the writer's buffers, ledger and manifest.
"""

from __future__ import annotations

import errno

from nodetape.core.clock import boottime_ns
from nodetape.core.errors import NodetapeError

# High-volume event streams: dropped first under back-pressure and on a full disk.
# Sampled tables (cgroup_samples, psi_*, recorder_stats, ...) and lifecycle events
# are small and bounded by the sampling interval, and are what an incident needs most.
RAW_TABLES = frozenset({"file_opens", "processes", "namespaces", "packet_drops", "syscall_counts", "syscall_latency"})

_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFull(NodetapeError):
    """The tape's filesystem is full and the recorder cannot go on (exit 1: not bad input)."""

    exit_code = 1


class DiskFullEscalation:
    """`_make_room` (one step) and `_fatal` (the last), for TapeWriter."""

    def _make_room(self, buf: object | None) -> str:
        """One step of the disk-full escalation (writer.py's module doc).

        Returns 'retry' when space may have been freed, 'degraded' when raw tables
        were just given up; raises DiskFull at the end.
        """
        if self.offline:
            self._fatal("an offline copy drops no rows")
        if self.ledger.pending:
            # the manifest already dropped them: skip their grace period (merged parts that
            # replace some of them made durable first)
            self.sync_folders()
            self.ledger.unlink_pending(force=True)
            return "retry"
        if self.ledger.bounded and self.ledger.oldest() is not None:
            # flight-recorder mode: the oldest rows are the ones to lose; free about
            # what the part needs (a part is smaller than its Arrow buffer)
            n = self.ledger.evict((buf.nbytes // 2 if buf is not None else 0) + (64 << 10))
            d = self.manifest.note_disk_full(self._boot_clock(), action="retired the oldest parts early to make room")
            d["evicted_parts"] = d.get("evicted_parts", 0) + n
            # manifest first, then the files; if even the manifest cannot be written
            # the files go anyway (readers skip parts that vanished)
            self._try_write_manifest()
            self.ledger.unlink_pending(force=True)
            return "retry"
        if not self.degraded:
            self.degraded = True
            for b in self._buffers.values():
                if b.name in RAW_TABLES and b.rows:
                    self._drop(b.name, b.rows, "disk_full")
                    self._clear(b)
            self.manifest.note_disk_full(
                self._boot_clock(), action="stopped writing raw event tables (" + ", ".join(sorted(RAW_TABLES)) + ")")
            return "degraded"
        self._fatal("no space left after dropping raw event tables")
        return "fatal"  # not reached

    def _fatal(self, why: str) -> None:
        self.failed = True
        for b in self._buffers.values():
            if b.rows:
                self._drop(b.name, b.rows, "disk_full")
                self._clear(b)
        self._release_reserve()
        self.manifest.note_disk_full(boottime_ns(), fatal=True, reason=why)
        self.manifest.stop_reason = f"disk full: {why}"
        self.manifest.writer = self.stats_json()
        self._try_write_manifest()
        raise DiskFull(f"disk full writing {self.path}: {why}; the tape is valid up to its last flush")
