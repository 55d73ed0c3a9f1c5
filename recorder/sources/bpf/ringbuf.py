"""Batch consumer of a BPF ring buffer: no Python call per event.

A bcc ring-buffer callback costs one Python call per record and tops out near
300k records/s here; under a syscall flood its "drain until empty" loop never
returns (DESIGN.md). Instead we map the ring buffer the way libbpf does
(kernel/bpf/ringbuf.c, tools/lib/bpf/ringbuf.c):

- offset 0, one page, read-write: the consumer position (u64);
- offset page_size, read-only: the producer position page, then the data
  pages mapped twice in a row, so a record that wraps is contiguous.

Records are an 8-byte header (u32 len whose bit 31 is BUSY, not yet committed,
and bit 30 DISCARD; u32 page offset) then the payload, padded to 8 bytes.
A source's records all have one fixed size, so the bytes between the consumer
and producer positions are an array of identical records: one numpy view,
one BUSY check, one copy, then the consumer position moves past what we took.
Each poll takes at most `max_bytes`, so a flood cannot livelock the recorder;
what the ring cannot hold is dropped in the kernel and counted there.
"""

from __future__ import annotations

import mmap

import numpy as np

BUSY = 1 << 31
DISCARD = 1 << 30
HDR = 8


def record_size(payload_size: int) -> int:
    return (payload_size + HDR + 7) & ~7


class RingBufferConsumer:
    """Reads fixed-size records of `dtype` from a BPF_MAP_TYPE_RINGBUF map fd."""

    def __init__(self, map_fd: int, data_size: int, dtype: np.dtype, max_bytes: int | None = None):
        self.page = mmap.PAGESIZE
        if data_size <= 0 or data_size & (data_size - 1) or data_size % self.page:
            raise ValueError(f"ring buffer size {data_size} is not a power-of-2 multiple of the page size")
        self.fd = map_fd  # readable (poll/epoll) while records wait
        self.size = data_size
        self.mask = data_size - 1
        self.dtype = np.dtype(dtype)
        self.rec = record_size(self.dtype.itemsize)
        # header + payload + padding as one structured record
        pad = self.rec - HDR - self.dtype.itemsize
        fields = [("len", "<u4"), ("pgoff", "<u4"), ("data", self.dtype)]
        if pad:
            fields.append(("_pad", f"V{pad}"))
        self.rec_dtype = np.dtype(fields)
        assert self.rec_dtype.itemsize == self.rec
        self.max_bytes = max(self.rec, (max_bytes or data_size) // self.rec * self.rec)
        self._cons_map = mmap.mmap(map_fd, self.page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._prod_map = mmap.mmap(map_fd, self.page + 2 * data_size, mmap.MAP_SHARED, mmap.PROT_READ,
                                   offset=self.page)
        self._cons = np.frombuffer(self._cons_map, dtype="<u8", count=1)
        self._prod = np.frombuffer(self._prod_map, dtype="<u8", count=1)
        self._data = np.frombuffer(self._prod_map, dtype=np.uint8, offset=self.page)
        self.malformed = 0

    def positions(self) -> tuple[int, int]:
        """(consumer, producer) positions: equal when the ring is empty; the producer's moves at
        every reservation, committed, discarded or not yet either."""
        return int(self._cons[0]), int(self._prod[0])

    def pending_bytes(self) -> int:
        return int(self._prod[0]) - int(self._cons[0])

    def read(self) -> np.ndarray:
        """Committed records since the last read (at most max_bytes of them), copied out."""
        cons = int(self._cons[0])
        # x86 and arm64 loads of an aligned u64 are atomic; the kernel publishes
        # producer_pos with smp_store_release after the header is written
        avail = int(self._prod[0]) - cons
        if avail <= 0:
            return np.empty(0, dtype=self.dtype)
        take = min(avail, self.max_bytes) // self.rec * self.rec
        if take == 0:
            # a partial record at the end: the producer reserved but did not commit yet
            return np.empty(0, dtype=self.dtype)
        start = cons & self.mask
        recs = self._data[start:start + take].view(self.rec_dtype)
        lens = recs["len"]
        busy = np.flatnonzero(lens & BUSY)
        n = int(busy[0]) if busy.size else len(recs)
        recs = recs[:n]
        lens = lens[:n]
        size_ok = (lens & ~np.uint32(BUSY | DISCARD)) == self.dtype.itemsize
        if not size_ok.all():
            # a record of another size means the stride is wrong from there on:
            # keep what precedes it, skip the rest of the batch by its headers
            bad = int(np.flatnonzero(~size_ok)[0])
            recs, lens = recs[:bad], lens[:bad]
            n = bad
            if n == 0:
                self.malformed += 1
                self._skip_one(cons)
                return np.empty(0, dtype=self.dtype)
        out = recs["data"][(lens & DISCARD) == 0].copy()
        # copy first, then release the space to the producer
        self._cons[0] = cons + n * self.rec
        return out

    def _skip_one(self, cons: int) -> None:
        hdr = int(self._data[cons & self.mask: (cons & self.mask) + 4].view("<u4")[0])
        if hdr & BUSY:
            return
        self._cons[0] = cons + record_size(hdr & ~(BUSY | DISCARD))

    def close(self) -> None:
        for name in ("_cons", "_prod", "_data"):
            setattr(self, name, None)
        for m in (self._cons_map, self._prod_map):
            try:
                m.close()
            except BufferError:
                pass


def ringbuf_consumer(table, dtype, max_bytes: int | None = None) -> RingBufferConsumer:
    """A consumer for a bcc RingBuf table (BPF_RINGBUF_OUTPUT): size from the map's info."""
    fd = table.map_fd
    size = _map_max_entries(fd)
    return RingBufferConsumer(fd, size, dtype, max_bytes)


def _map_max_entries(fd: int) -> int:
    """max_entries of a map, from /proc/self/fdinfo (for a ring buffer: its data size)."""
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            if line.startswith("max_entries:"):
                return int(line.split()[1])
    raise OSError(f"fd {fd} is not a BPF map")


__all__ = ["BUSY", "DISCARD", "RingBufferConsumer", "record_size", "ringbuf_consumer"]
