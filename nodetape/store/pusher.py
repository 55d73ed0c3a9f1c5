"""Flight-recorder mode with `--push STORE`: sealed parts go to the store in the background.

The tape writer calls `sealed(table, path)` right after a part is renamed into place;
that only queues the path, so recording never waits on the store. One thread pushes
what is queued (push.py: atomic, idempotent), then rewrites the tape's manifest in the
store. While the store is unreachable (a failed mount, an object store down) every
attempt fails, is counted, and is retried with exponential backoff (0.5 s doubling to
30 s); queued parts stay queued, so the store catches up when it returns. A part the
retention window retired before it could be pushed is counted as expired: the
window no longer holds it, and neither does the store.

Counters (cumulative): parts and bytes pushed, failed attempts, parts pending and
expired; the recorder writes them into recorder_stats (its own row) and the manifest.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from nodetape.store.push import PushStats, TapeTarget, push_tape
from nodetape.store.storefs import open_fs

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0
_SNAPSHOT = "<snapshot>"


@dataclass
class PushCounters:
    parts: int = 0
    bytes: int = 0
    failures: int = 0
    expired: int = 0
    last_error: str | None = None
    last_push_s: float = 0.0  # wall time of the last part delivered (the metrics' last push timestamp)


class Pusher:
    def __init__(self, store: str, tape: Path, *, host: str | None = None,
                 backoff_start_s: float = BACKOFF_START_S, backoff_max_s: float = BACKOFF_MAX_S):
        self.location = store
        self.tape = Path(tape)
        self.host = host
        self.backoff_start_s = backoff_start_s
        self.backoff_max_s = backoff_max_s
        self.counters = PushCounters()
        self._queue: collections.deque[tuple[str, Path]] = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._target: TapeTarget | None = None
        # the store's manifest is rewritten when asked for (_want) after the last write (_written)
        self._want, self._written = 1, 0
        self._thread = threading.Thread(target=self._run, name="nodetape-push", daemon=True)
        self._thread.start()

    # -- called by the recorder (never blocks) ---------------------------------
    def sealed(self, table: str, path: Path) -> None:
        with self._lock:
            self._queue.append((table, Path(path)))
            self._idle.clear()
        self._wake.set()

    def snapshot(self, path: Path) -> None:
        """A snapshot tape: pushed whole (its parts share the tape's id, so most are already there)."""
        self.sealed(_SNAPSHOT, path)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def stats_json(self) -> dict:
        c = self.counters
        return {"store": self.location, "parts": c.parts, "bytes": c.bytes, "failures": c.failures,
                "pending": self.pending, "expired": c.expired, "last_error": c.last_error}

    def finish(self, timeout_s: float = 10.0) -> bool:
        """Push what is queued (and the final manifest) for up to timeout_s; True if nothing is left."""
        with self._lock:
            self._want += 1
            self._idle.clear()
        self._wake.set()
        done = self._idle.wait(timeout_s)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        return done and self.pending == 0

    # -- the pushing thread ----------------------------------------------------
    def _target_now(self) -> TapeTarget:
        manifest = json.loads((self.tape / "manifest.json").read_text())
        if self._target is None:
            store = open_fs(self.location, create=True)
            self._target = TapeTarget(store, manifest, self.host)
        else:
            self._target.manifest = manifest  # clock pairs, sources and counters move on
        return self._target

    def _push_one(self, table: str, path: Path) -> None:
        from nodetape.tape.retention import part_index

        target = self._target_now()
        if table == _SNAPSHOT:
            st = push_tape(path, target.store, host=self.host)
        else:
            if not path.exists():
                self.counters.expired += 1  # retired by retention before it could go
                return
            st = PushStats()
            target.push_part(table, path, part_index(path.name), st)
        self.counters.parts += st.parts_pushed
        self.counters.bytes += st.bytes_pushed
        if st.parts_pushed:
            self.counters.last_push_s = time.time()
        if st.conflicts:
            self.counters.last_error = st.conflicts[0]
        with self._lock:
            self._want += 1

    def _step(self) -> bool:
        """Push the oldest queued item, or the manifest when the queue is empty; False when idle."""
        with self._lock:
            item = self._queue[0] if self._queue else None
            want = self._want
        if item is not None:
            self._push_one(*item)
            with self._lock:
                self._queue.popleft()
            return True
        if want != self._written:
            self._target_now().write_manifest()
            self._written = want
            return True
        with self._lock:  # idle only if nothing arrived meanwhile
            if not self._queue and self._want == self._written:
                self._idle.set()
        return False

    def _run(self) -> None:
        delay = self.backoff_start_s
        while True:
            try:
                busy = self._step()
                delay = self.backoff_start_s
            except Exception as e:  # the store is unreachable (OSError, UserError, pyarrow errors...)
                if isinstance(e, FileNotFoundError) and str(e.filename or "").startswith(str(self.tape)):
                    with self._lock:  # the local part vanished mid-push: retired, not a store failure
                        if self._queue:
                            self._queue.popleft()
                    self.counters.expired += 1
                    continue
                self._backoff(e, delay)
                delay = min(delay * 2, self.backoff_max_s)
                if self._stop.is_set():
                    return
                continue
            if not busy:
                if self._stop.is_set():
                    return
                self._wake.wait(1.0)
                self._wake.clear()

    def _backoff(self, e: Exception, delay: float) -> None:
        self.counters.failures += 1
        self.counters.last_error = (str(e).splitlines() or [type(e).__name__])[0][:300]
        self._target = None  # reopen the store next time: a remount, a new connection
        self._stop.wait(delay)
