"""The recorder_stats rows: each source's counters, and the recorder's own.

One row per source per interval (events, dropped, why, lag), and a 'recorder'
row with the rows the writer dropped (back-pressure, disk full), how late the
loop's tick ran since the last row, and the process's CPU time and RSS.

Built column-wise (columns.py): the `source` column is kept while the sources are
the same, the counters go to Arrow in one conversion, and /proc/self/statm is read
with pread on a kept descriptor.
"""

from __future__ import annotations

import os
import resource

import pyarrow as pa

from nodetape.recorder.columns import IdentityColumns, same_type
from nodetape.recorder.lifecycle import SourceState
from nodetape.schemas import batch, column_array

_INTS = ("ts_ns", "events", "dropped", "lag_ns", "recorder_cpu_usec", "recorder_rss_bytes")
_PUSH = ("parts", "bytes", "failures", "pending")  # record --push, on the recorder's own row
_PAGE = os.sysconf("SC_PAGE_SIZE")
_statm = {"fd": -1}
_names = IdentityColumns("recorder_stats", ("source",))


def rss_bytes() -> int | None:
    try:
        if _statm["fd"] < 0:
            _statm["fd"] = os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)
        return int(os.pread(_statm["fd"], 256, 0).split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def cpu_usec() -> int:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return int((ru.ru_utime + ru.ru_stime) * 1_000_000)


def stats_batch(now_ns: int, states: list[SourceState], writer, rows_written: int, max_lag_ns: int,
                push: dict | None = None) -> pa.RecordBatch:
    """The rows of one stats interval; `writer` is the TapeWriter (its drops by table and reason),
    `push` the pusher's counters when recording with --push."""
    running = [st for st in states if st.source is not None]
    stats = [st.source.stats for st in running]
    n = len(stats)
    reasons: dict[str, int] = {}
    for d in writer.dropped.values():
        for r, k in d.items():
            reasons[r] = reasons.get(r, 0) + k
    reason = "+".join(sorted(reasons, key=lambda r: -reasons[r])) or None
    none = [None] * n
    ints = [[now_ns] * (n + 1), [s.events for s in stats] + [rows_written],
            [s.dropped for s in stats] + [writer.dropped_rows], [s.lag_ns for s in stats] + [max_lag_ns],
            none + [cpu_usec()], none + [rss_bytes()]]
    ints += [none + [(push or {}).get(k)] for k in _PUSH]  # NULL on source rows, and when not pushing
    cols = dict(zip((*_INTS, *(f"push_{k}" for k in _PUSH)), same_type(ints, pa.int64())))
    cols["source"] = _names.get(running, lambda: ([st.name for st in running] + ["recorder"],))[0]
    cols["drop_reason"] = column_array("recorder_stats", "drop_reason", [s.drop_reason for s in stats] + [reason])
    return batch("recorder_stats", cols)
