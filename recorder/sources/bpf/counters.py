"""Exact interval deltas of cumulative in-kernel counters.

The BPF programs only ever add to a counter; this reads all counters every
interval and emits the growth since the previous read. An increment made
while we read lands either in this read or the next, never in none or two:
counts are exact whatever the rate.

Keys of cgroups that no longer exist are evicted, but only when the cgroup was
already gone BEFORE the read that preceded the eviction (so that read saw its
final value: no task remains in a removed cgroup to add to it, and cgroup2 ids
are never reused within a boot).
"""

from __future__ import annotations

import numpy as np

from . import delete_keys, read_hash


class CumulativeCounters:
    def __init__(self, table, key_dtype, evict_fill: float = 0.5):
        self.table = table
        self.key_dtype = np.dtype(key_dtype)
        self.prev: dict[bytes, int] = {}
        self.evict_fill = evict_fill

    def read_deltas(self, live_ids: set[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(keys, deltas) of the counters that grew since the last call.

        live_ids: cgroup ids that existed before this read; keys whose cgid is not
        among them are deleted from the map after being read."""
        keys, vals = read_hash(self.table, self.key_dtype, np.dtype("<u8"))
        raw = keys.view(f"V{self.key_dtype.itemsize}")
        prev = self.prev
        deltas = np.empty(len(keys), dtype=np.int64)
        cur: dict[bytes, int] = {}
        # one dict operation per (cgroup, key), not per event
        for i, (k, v) in enumerate(zip(raw.tolist(), vals.tolist())):
            cur[k] = v
            deltas[i] = v - prev.get(k, 0)
        self.prev = cur
        grew = deltas > 0
        if live_ids is not None and len(keys):
            dead = ~np.isin(keys["cgid"], np.fromiter(live_ids, dtype=np.uint64, count=len(live_ids)))
            if dead.any():
                delete_keys(self.table, keys[dead])
                for k in raw[dead].tolist():
                    cur.pop(k, None)
        return keys[grew], deltas[grew]

    def wants_eviction(self) -> bool:
        return len(self.prev) > self.evict_fill * self.table.max_entries
