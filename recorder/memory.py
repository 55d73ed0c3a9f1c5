"""The recorder process's memory: what an always-on recorder keeps resident between flushes.

Measured on this machine with every source (docs/idle.md): the anonymous RSS is
mostly glibc heap (the live state libbcc/LLVM keep per eBPF program, plus what
compiling freed but glibc kept), a few arenas of worker threads, Arrow's own
jemalloc pool, and Python's object arenas. What this module does about it:

- configure() (the `nodetape record` process only, before the sources start:
  it changes process-wide settings a library caller may not want):
  - M_MMAP_THRESHOLD 128 KiB, fixed: glibc otherwise raises its threshold after
    the first large free, so later large buffers (a compile's, a flush's) come
    from the heap and stay resident after free; mmapped ones are returned;
  - M_ARENA_MAX 2: each thread (compactor, tree reader, PSI triggers, ring
    buffer readers) would otherwise get an arena that keeps its own freed pages;
  - Arrow's default memory pool -> the system allocator (ARROW_DEFAULT_MEMORY_POOL,
    unless set, and only if pyarrow is not loaded yet), so Arrow's buffers come
    from glibc and malloc_trim returns them too; jemalloc's arenas kept ~11 MiB
    more anonymous memory in a recorder with every source (docs/idle.md);
- trim(): malloc_trim(0), after the sources start (compilation's freed heap) and
  then at most once per TRIM_EVERY_NS from the loop (Trimmer), after a flush.

Every call is a no-op where libc is not glibc.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD = 128 << 10
ARENA_MAX = 2
TRIM_EVERY_NS = 30_000_000_000


def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def configure() -> dict:
    """Process-wide allocator settings for a long-running recorder; returns what was set."""
    done: dict = {}
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        done["mmap_threshold"] = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
        done["arena_max"] = bool(libc.mallopt(M_ARENA_MAX, ARENA_MAX))
    # Arrow's C++ code (Parquet writer, compute) takes its default pool from this variable when
    # pyarrow loads (pa.set_memory_pool changes only pyarrow's own default): set before the import
    if "pyarrow" not in sys.modules:
        os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
        done["arrow_pool"] = os.environ["ARROW_DEFAULT_MEMORY_POOL"]
    return done


def trim() -> None:
    """Return freed heap (all arenas) to the kernel."""
    libc = _libc()
    try:
        if libc is not None:
            libc.malloc_trim(0)
    except AttributeError:
        pass  # not glibc: nothing to trim


class Trimmer:
    """trim() at most once per `every_ns` (the loop calls it after each flush)."""

    def __init__(self, every_ns: int = TRIM_EVERY_NS):
        self.every_ns = every_ns
        self.last_ns: int | None = None

    def maybe(self, now_ns: int) -> None:
        if self.last_ns is None or now_ns - self.last_ns >= self.every_ns:
            trim()
            self.last_ns = now_ns
