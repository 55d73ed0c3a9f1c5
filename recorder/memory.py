"""The recorder process's memory: what an always-on recorder keeps resident between flushes.

Measured on this machine with every source (docs/idle.md, "Memory"): the
anonymous RSS is the interpreter with numpy, pyarrow and the CLI's modules,
glibc's heap, a few arenas of worker threads and Python's object arenas.
libbcc/LLVM are not in it: eBPF programs are compiled in a child process
(recorder/sources/bpf/loader.py). What this module does about the rest:

- configure() (the `nodetape record` process only, before the sources start:
  it changes process-wide settings a library caller may not want):
  - M_MMAP_THRESHOLD 128 KiB, fixed: glibc otherwise raises its threshold after
    the first large free, so later large buffers (a compile's, a flush's) come
    from the heap and stay resident after free; mmapped ones are returned;
  - M_ARENA_MAX 2: each thread (compactor, tree reader, PSI triggers, ring
    buffer readers) would otherwise get an arena that keeps its own freed pages;
  - Arrow's default memory pool -> the system allocator (ARROW_DEFAULT_MEMORY_POOL
    unless set, before pyarrow loads; pyarrow's own default, pa.set_memory_pool,
    when it is loaded already), so Arrow's buffers come from glibc and malloc_trim
    returns them too; mimalloc's arena kept ~11 MiB more anonymous memory in a
    recorder with every source (docs/idle.md);
- trim(): malloc_trim(0), after the sources start (what start-up freed) and
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
    # Arrow's C++ code takes its default pool from this variable when pyarrow loads: set before the import
    if "pyarrow" not in sys.modules:
        os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
        done["arrow_pool"] = os.environ["ARROW_DEFAULT_MEMORY_POOL"]
    elif os.environ.get("ARROW_DEFAULT_MEMORY_POOL", "system") == "system":
        done["arrow_pool"] = _pyarrow_system_pool()
    return done


def _pyarrow_system_pool() -> str:
    """pyarrow loaded already (`nodetape record` imports the API first): its C++ default pool
    is fixed (mimalloc here), but what pyarrow passes to C++ (pa.array, the Parquet writer and
    reader, compute) is pyarrow's own default, which can still be the system allocator. Left on
    mimalloc, a recorder held an 11-12 MiB arena (a 1 GiB reservation) of freed buffers."""
    import pyarrow as pa  # noqa: PLC0415 (loaded: no import cost)

    pa.set_memory_pool(pa.system_memory_pool())
    return "system (pyarrow's default; loaded before configure)"


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
