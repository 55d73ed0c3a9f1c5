"""The recorder_stats rows: each source's counters, and the recorder's own.

One row per source per interval (events, dropped, why, lag), and a 'recorder'
row with the rows the writer dropped (back-pressure, disk full), how late the
loop's tick ran since the last row, and the process's CPU time and RSS.
"""

from __future__ import annotations

import os
import resource

import pyarrow as pa

from nodetape.recorder.lifecycle import SourceState
from nodetape.schemas import batch

_COLS = ("ts_ns", "source", "events", "dropped", "drop_reason", "lag_ns", "recorder_cpu_usec", "recorder_rss_bytes")
_PUSH = ("parts", "bytes", "failures", "pending")  # record --push, on the recorder's own row


def rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def cpu_usec() -> int:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return int((ru.ru_utime + ru.ru_stime) * 1_000_000)


def stats_batch(now_ns: int, states: list[SourceState], writer, rows_written: int, max_lag_ns: int,
                push: dict | None = None) -> pa.RecordBatch:
    """The rows of one stats interval; `writer` is the TapeWriter (its drops by table and reason),
    `push` the pusher's counters when recording with --push."""
    cols: dict[str, list] = {k: [] for k in _COLS}
    for st in states:
        if st.source is None:
            continue
        s = st.source.stats
        for k, v in zip(_COLS, (now_ns, st.name, s.events, s.dropped, s.drop_reason, s.lag_ns, None, None)):
            cols[k].append(v)
    reasons: dict[str, int] = {}
    for d in writer.dropped.values():
        for r, n in d.items():
            reasons[r] = reasons.get(r, 0) + n
    reason = "+".join(sorted(reasons, key=lambda r: -reasons[r])) or None
    for k, v in zip(_COLS, (now_ns, "recorder", rows_written, writer.dropped_rows, reason, max_lag_ns,
                            cpu_usec(), rss_bytes())):
        cols[k].append(v)
    n_sources = len(cols["ts_ns"]) - 1
    for k in _PUSH:  # NULL on source rows, and when not pushing
        cols[f"push_{k}"] = [None] * n_sources + [(push or {}).get(k)]
    return batch("recorder_stats", cols)
