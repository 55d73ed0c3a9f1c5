"""Exact interval deltas of cumulative in-kernel counters.

The BPF programs only ever add to a counter; this reads all counters every
interval and emits the growth since the previous read. An increment made
while we read lands either in this read or the next, never in none or two:
counts are exact whatever the rate.

Keys of cgroups that no longer exist are evicted, but only when the cgroup was
already gone BEFORE the read that preceded the eviction (so that read saw its
final value: no task remains in a removed cgroup to add to it, and cgroup2 ids
are never reused within a boot).

Reading a hash walks all its buckets in the kernel, whatever it holds, so a read
is skipped when the program's per-CPU count of adds to the hash (slots.h
count_hash_add, read with the drop counters) has not moved since the count taken before the previous read: every add
before that count was in that read, so the hash holds the same values. The deltas
are vectorized (counter_deltas): the previous read kept sorted by key bytes, each
new key found by binary search, no Python operation per key.
"""

from __future__ import annotations

import numpy as np

from . import HashReader, delete_keys


def counter_deltas(prev_keys: np.ndarray, prev_vals: np.ndarray,
                   keys: np.ndarray, vals: np.ndarray) -> np.ndarray:
    """Growth of each counter in (keys, vals) since (prev_keys, prev_vals), as int64.

    Keys are raw bytes (a 'V<n>' view of the key struct); prev_keys sorted and unique.
    A key absent before grew from 0."""
    vals = vals.astype(np.uint64, copy=False)
    if len(prev_keys) == 0 or len(keys) == 0:
        return vals.view(np.int64).copy()
    at = np.minimum(np.searchsorted(prev_keys, keys), len(prev_keys) - 1)
    base = np.where(prev_keys[at] == keys, prev_vals[at], np.uint64(0))
    return (vals - base).view(np.int64)


def sorted_by_key(keys: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Copies of (keys, vals) in key byte order: the form counter_deltas searches."""
    order = np.argsort(keys, kind="stable")
    return keys[order], vals[order]


def dead_mask(cgids: np.ndarray, live_ids: set[int]) -> np.ndarray:
    """Which entries belong to cgroups not in live_ids (the scan made before the read)."""
    return ~np.isin(cgids, np.fromiter(live_ids, dtype=np.uint64, count=len(live_ids)))


class CumulativeCounters:
    def __init__(self, table, key_dtype, evict_fill: float = 0.5):
        self.table = table
        self.key_dtype = np.dtype(key_dtype)
        self.raw = np.dtype(f"V{self.key_dtype.itemsize}")
        self.reader = HashReader(table, self.key_dtype, np.dtype("<u8"))
        self.prev_keys = np.empty(0, dtype=self.raw)  # sorted raw keys of the last read
        self.prev_vals = np.empty(0, dtype=np.uint64)
        self.evict_fill = evict_fill
        self._adds_seen: int | None = None  # the count of adds taken before the last read
        self.reads = 0  # hash reads made (the rest were skipped)

    def read_deltas(self, live_ids: set[int] | None = None, force: bool = False,
                    adds: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(keys, deltas) of the counters that grew since the last call.

        live_ids: cgroup ids that existed before this read; keys whose cgid is not
        among them are deleted from the map after being read. adds: the program's
        count of adds to the hash, taken before this call (None: unknown); the read is
        skipped when it equals the count taken before the previous call, unless forced
        (the last read, at stop) or evicting."""
        unchanged = adds is not None and adds == self._adds_seen
        self._adds_seen = adds
        if unchanged and not force and live_ids is None:
            return np.empty(0, dtype=self.key_dtype), np.empty(0, dtype=np.int64)
        self.reads += 1
        keys, vals = self.reader.read()
        raw = keys.view(self.raw)
        deltas = counter_deltas(self.prev_keys, self.prev_vals, raw, vals)
        grew = deltas > 0
        out = keys[grew].copy(), deltas[grew]
        keep = np.ones(len(keys), dtype=bool)
        if live_ids is not None and len(keys):
            dead = dead_mask(keys["cgid"], live_ids)
            if dead.any():
                delete_keys(self.table, keys[dead])
                keep = ~dead
        self.prev_keys, self.prev_vals = sorted_by_key(raw[keep], vals[keep])
        return out

    def wants_eviction(self) -> bool:
        return len(self.prev_keys) > self.evict_fill * self.table.max_entries
