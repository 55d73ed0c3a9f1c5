"""Sources through their lifetime in a recording: load, probe, start, poll, stop.

The loop knows sources only through the Source protocol (source.py). A source
that cannot run is a SourceState with status 'unavailable' and its reason; one
that raises is 'failed' with the exception, and the others go on (DESIGN.md:
an unavailable source is a manifest row with a reason, never a crash of the
others). Every batch a source returns goes to `write`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from nodetape.core.clock import boottime_ns
from nodetape.core.errors import SourceUnavailable
from nodetape.recorder.registry import load_source_class
from nodetape.recorder.source import Batches, RecordContext

Write = Callable[[Batches], None]


@dataclass
class SourceState:
    name: str
    source: object | None
    status: str  # 'active', 'unavailable', 'failed', 'stopped'
    reason: str | None = None
    tables: tuple[str, ...] = ()
    start_ns: int | None = None
    end_ns: int | None = None
    needs: str | None = None
    max_poll_ns: int = 0  # the longest single poll: a source must bound its own
    environment: dict | None = None

    def to_json(self) -> dict:
        st = getattr(self.source, "stats", None)
        return {
            "status": self.status,
            "reason": self.reason,
            "needs": self.needs if self.status in ("unavailable", "failed") else None,
            "max_poll_ms": round(self.max_poll_ns / 1e6, 3) if self.source is not None else None,
            "tables": list(self.tables),
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "events": st.events if st else 0,
            "dropped": st.dropped if st else 0,
            "drop_reason": st.drop_reason if st else None,
            # what the source ran on (e.g. bcc version, tracefs, which kernel headers)
            "environment": self.environment,
        }


def start_sources(names: list[str], ctx: RecordContext, states: list[SourceState], write: Write) -> None:
    """Start each named source in order, appending its state to `states` as it goes."""
    for name in names:
        st = SourceState(name, None, "unavailable")
        states.append(st)
        try:
            cls = load_source_class(name)
            st.tables = tuple(cls.tables)
            st.needs = getattr(cls, "needs", None) or None
            src = cls()
            src.probe(ctx)
            initial = src.start(ctx)
        except SourceUnavailable as e:
            st.reason = e.reason
            continue
        except Exception as e:  # a broken source must not take the others down
            st.status, st.reason = "failed", f"{type(e).__name__}: {e}"
            continue
        st.source, st.status, st.start_ns = src, "active", boottime_ns()
        env = getattr(src, "environment", None)
        if callable(env):
            try:
                st.environment = env()
            except Exception as e:  # provenance is best effort, never fatal
                st.environment = {"error": f"{type(e).__name__}: {e}"}
        write(initial)


def is_due(source, now_ns: int, ready: set[int] | None) -> bool:
    """Whether the loop polls `source` now: it has no next_poll_ns (every tick), its next poll is due,
    or one of its wait_fds is in `ready` (the descriptors the loop's wait reported); None: every source."""
    nxt = getattr(source, "next_poll_ns", None)
    if nxt is None or ready is None:
        return True
    due = nxt()
    if due is None or due <= now_ns:
        return True
    fds = getattr(source, "wait_fds", None)
    return fds is not None and not ready.isdisjoint(fds())


def poll_all(states: list[SourceState], now_ns: int, write: Write, ready: set[int] | None = None) -> None:
    """Poll each active source that is due (is_due) once, timing each poll; a source that raises is
    failed and stopped."""
    for st in states:
        if st.status != "active" or not is_due(st.source, now_ns, ready):
            continue
        t0 = time.monotonic_ns()
        try:
            out = st.source.poll(now_ns)
        except Exception as e:
            st.status, st.reason, st.end_ns = "failed", f"{type(e).__name__}: {e}", boottime_ns()
            stop_source(st, write)
            continue
        finally:
            st.max_poll_ns = max(st.max_poll_ns, time.monotonic_ns() - t0)
        if out:
            write(out)


def stop_source(st: SourceState, write: Write) -> None:
    try:
        write(st.source.stop())
    except Exception as e:
        st.reason = (st.reason or "") + f"; stop failed: {type(e).__name__}: {e}"


def stop_active(states: list[SourceState], write: Write) -> None:
    for st in states:
        if st.status == "active":
            stop_source(st, write)
            st.status, st.end_ns = "stopped", boottime_ns()

