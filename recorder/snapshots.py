"""The recorder's snapshots: `nodetape snapshot` requests, SIGUSR1, and automatic ones on a trigger.

A mixin of Recorder (loop.py): it uses the recorder's writer, options, pusher and
snapshot list, and runs on the loop's thread only.
"""

from __future__ import annotations

import json
from pathlib import Path

from nodetape.core.clock import boottime_ns
from nodetape.tape.fs import atomic_write_json
from nodetape.tape.snapshot import REQUEST_PREFIX, RESULT_PREFIX, default_snapshot_path
from nodetape.tape.writer import DiskFull


class SnapshotTaking:
    def _snapshot(self, out: Path, reason: str) -> Path:
        self._sync_manifest_sources()
        path = self.writer.snapshot(out, reason)
        if self.pusher is not None:
            self.pusher.snapshot(path)
        self.snapshots.append({"path": str(path), "reason": reason, "taken_ns": boottime_ns()})
        return path

    def _handle_snapshot_requests(self) -> None:
        """Answer `nodetape snapshot` request files; with none, a SIGUSR1 snapshot into the snapshot folder."""
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
