"""User-space side of the cgroup slots (slots.h): dense counter rows per cgroup.

The kernel adds to `counts[slot, col]` (an mmapped BPF array; col is the
syscall nr, or nr * buckets + bucket) for cgroups that own a slot, and to a
hash for the others. Every interval this reads the rows in use (a memory copy,
no syscall), emits the growth since the previous read, gives free slots to the
cgroups the hash saw, and takes back the slots of removed cgroups.

Exactness: a row only grows while its cgroup lives. A slot is recycled (row
zeroed, then released) only when its cgroup was absent from a scan of the tree
made before the read that preceded the recycling, so that read saw the row's
final value; the slot was given out after an earlier read had seen the cgroup
alive. The owner check in the kernel makes any stale hint harmless.
"""

from __future__ import annotations

import contextlib
import heapq
import mmap

import numpy as np


def mmap_array(table, dtype, n: int) -> tuple[mmap.mmap, np.ndarray]:
    """A BPF_F_MMAPABLE array map as a writable numpy array of n items.

    The kernel lays array elements out every round_up(value_size, 8) bytes
    (kernel/bpf/arraymap.c), so dtype must be 8 bytes wide: a u32 map is read
    and written as u64 whose low half (little-endian) is the value."""
    assert np.dtype(dtype).itemsize == 8, "array map elements are 8-byte aligned"
    size = -(-n * np.dtype(dtype).itemsize // mmap.PAGESIZE) * mmap.PAGESIZE
    m = mmap.mmap(table.map_fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    return m, np.frombuffer(m, dtype=dtype, count=n)


class SlotCounters:
    def __init__(self, bpf, counts_name: bytes, nslots: int, row: int, hint_size: int):
        import ctypes

        self._ct = ctypes
        self.nslots, self.row, self.hint_mask = nslots, row, hint_size - 1
        self._maps = []
        m, counts = mmap_array(bpf[counts_name], np.uint64, nslots * row)
        self._maps.append(m)
        self.counts = counts.reshape(nslots, row)
        m, self.owner = mmap_array(bpf[b"slot_owner"], np.uint64, nslots)
        self._maps.append(m)
        m, self.hint = mmap_array(bpf[b"slot_hint"], np.uint64, hint_size)  # u32 values, 8-byte elements
        self._maps.append(m)
        self.slot_of = bpf[b"slot_of"]
        self.cgid_of = np.zeros(nslots, dtype=np.uint64)  # 0: free
        self.free = list(range(nslots))  # a heap: the lowest free slot first keeps `used` small
        self.used = 0  # rows [0, used) are read
        # the last value read of every cell, and a scratch mask: allocated once (pages of rows
        # never used stay unmapped), so a read allocates nothing of the rows' size
        self.prev = np.zeros((nslots, row), dtype=np.uint64)
        self._changed = np.zeros((nslots, row), dtype=bool)
        self.by_cgid: dict[int, int] = {}

    @property
    def in_use(self) -> int:
        return len(self.by_cgid)

    def read_deltas(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(cgroup ids, columns, deltas) of the cells that grew since the last read."""
        n = self.used
        cells = changed_cells(self.counts[:n], self.prev[:n], self._changed[:n])
        rows, cols = np.divmod(cells, self.row)
        d = take_growth(self.counts[:n], self.prev[:n], rows, cols)
        return self.cgid_of[rows], cols, d

    def assign(self, cgids) -> int:
        """Give a free slot to each cgroup id that has none; returns how many found none."""
        waiting = 0
        for cgid in cgids:
            cgid = int(cgid)
            if cgid in self.by_cgid:
                continue
            if not self.free:
                waiting += 1
                continue
            s = heapq.heappop(self.free)
            # the row was zeroed when the slot was released (or never written)
            self.owner[s] = cgid
            self.slot_of[self._ct.c_uint64(cgid)] = self._ct.c_uint32(s)
            h = cgid & self.hint_mask
            other = int(self.cgid_of[self.hint[h]])
            if other == 0 or (other & self.hint_mask) != h:  # never evict a live cgroup's hint
                self.hint[h] = s
            self.cgid_of[s] = cgid
            self.by_cgid[cgid] = s
            self.used = max(self.used, s + 1)
        return waiting

    def recycle(self, live_ids: set[int]) -> int:
        """Release the slots of cgroups not in live_ids (scanned before the last read)."""
        dead = [(c, s) for c, s in self.by_cgid.items() if c not in live_ids]
        for cgid, s in dead:
            self.counts[s] = 0
            self.prev[s] = 0
            self.owner[s] = 0
            try:
                del self.slot_of[self._ct.c_uint64(cgid)]
            except KeyError:
                pass
            self.cgid_of[s] = 0
            del self.by_cgid[cgid]
            heapq.heappush(self.free, s)
        return len(dead)

    def close(self) -> None:
        self.counts = self.owner = self.hint = None
        for m in self._maps:
            with contextlib.suppress(BufferError):  # a view still held elsewhere: unmapped when freed
                m.close()
        self._maps = []


def changed_cells(live: np.ndarray, prev: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """Flat indices of the cells of `live` (the mapped rows) that differ from `prev`: one
    compare pass into a preallocated mask, no copy of the rows."""
    np.not_equal(live, prev, out=scratch)
    return np.flatnonzero(scratch)


def take_growth(live: np.ndarray, prev: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Growth of the given cells since `prev`, which takes their values.

    Each cell is loaded once: an add landing after the compare but before this load is
    counted now, one landing after this load in the next read, so none is lost or doubled.
    A cell the compare saw unchanged keeps its old `prev` and its later growth is counted
    in the next read."""
    cur = live[rows, cols]
    d = (cur - prev[rows, cols]).view(np.int64)
    prev[rows, cols] = cur
    return d
