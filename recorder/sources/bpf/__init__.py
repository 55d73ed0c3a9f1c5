"""eBPF sources through bcc: one module and one .bpf.c program per source.

Shared here: the base class (compile in start(), detach before the last read,
drop counters), batch reads of kernel hash maps into numpy, the syscall name
table and cgroup id -> path resolution.

Nothing is compiled at import, and bcc is never imported in the recorder: each
program is compiled, loaded and attached by bcc in a child process (loader.py)
and the recorder keeps its descriptors (bpfsys.py), so libbcc and LLVM are not
resident (docs/idle.md, "Memory").
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import importlib.util
import os
import re
from pathlib import Path
from typing import ClassVar

import numpy as np

from nodetape.recorder.sources.bpf import env as bpf_env
from ...source import BaseSource, Batches, RecordContext, SourceUnavailable
from . import btf
from .bpfsys import MAP_LOOKUP_BATCH, BatchCall, possible_cpus
from .loader import LoadFailed, load_program

HERE = Path(__file__).resolve().parent

# index in every program's `drops` per-CPU array -> drop_reason (recorder_stats); the entry after
# them counts adds to the program's hash (common.h HASH_ADDS: read in the same call, not a drop)
DROP_REASONS = ("ringbuf_full", "rate_limit", "map_full")
HASH_ADDS = len(DROP_REASONS)


# -- syscall names -------------------------------------------------------------

_UNISTD = (
    "/usr/include/x86_64-linux-gnu/asm/unistd_64.h",  # linux-libc-dev
    "/usr/include/asm/unistd_64.h",
)
_NR = re.compile(r"^#define __NR_(\w+)\s+(\d+)\s*$", re.M)


def parse_unistd(text: str) -> dict[int, str]:
    """'#define __NR_read 0' lines -> {0: 'read'}."""
    return {int(nr): name for name, nr in _NR.findall(text)}


def syscall_names() -> dict[int, str]:
    """Syscall number -> name for this architecture, from the installed uapi
    headers (the kernel's own table), completed by bcc's table; never guessed."""
    names: dict[int, str] = {}
    ksrc = os.environ.get("BCC_KERNEL_SOURCE")
    candidates = list(_UNISTD)
    if ksrc:
        candidates.insert(0, f"{ksrc}/arch/x86/include/generated/uapi/asm/unistd_64.h")
    for c in candidates:
        try:
            names.update({k: v for k, v in parse_unistd(Path(c).read_text()).items() if k not in names})
        except OSError:
            continue
    for nr, name in _bcc_syscall_table().items():
        names.setdefault(nr, name.decode())
    return names


def _bcc_syscall_table() -> dict[int, bytes]:
    """bcc's table (bcc/syscall.py: plain data), loaded by path: importing the bcc
    package would load libbcc and LLVM into the recorder."""
    try:
        folder, _ = bpf_env.find_bcc()
        spec = importlib.util.spec_from_file_location("_nt_bcc_syscall", os.path.join(folder, "bcc", "syscall.py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return dict(mod.syscalls)
    except (SourceUnavailable, OSError, AttributeError, ImportError):
        return {}


# -- cgroup id -> path ---------------------------------------------------------

def cgroup_id_paths(v2_root: Path) -> dict[int, str]:
    """cgroup2 id -> path relative to the root ('/' for the root).

    The id bpf_get_current_cgroup_id() returns is the kernfs node id, which is
    the inode number of the cgroup's directory (kernel/cgroup/cgroup.c)."""
    out: dict[int, str] = {}
    root = str(v2_root)
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            out[os.stat(d).st_ino] = d[len(root):] or "/"
            with os.scandir(d) as it:
                for e in it:
                    if e.is_dir(follow_symlinks=False):
                        stack.append(e.path)
        except OSError:
            continue  # removed while we walked
    return out


class CgroupIdResolver:
    """Caches cgroup_id_paths and rescans (at most once per `min_rescan_ns`) on a miss."""

    def __init__(self, v2_root: Path | None, clock=None, min_rescan_ns: int = 1_000_000_000):
        self.v2_root = v2_root
        self.paths: dict[int, str] = {}
        self._clock = clock
        self._min = min_rescan_ns
        self._last = None
        if v2_root is not None:
            self.rescan()

    def rescan(self) -> None:
        if self.v2_root is not None:
            self.paths = cgroup_id_paths(self.v2_root)
            self._last = self._clock() if self._clock else None

    def path(self, cgroup_id: int) -> str | None:
        p = self.paths.get(cgroup_id)
        if p is None and self.v2_root is not None:
            now = self._clock() if self._clock else None
            if now is None or self._last is None or now - self._last >= self._min:
                self.rescan()
                p = self.paths.get(cgroup_id)
        return p


def shared_resolver(ctx: RecordContext) -> CgroupIdResolver:
    """One resolver per recording, shared by all sources through ctx.shared."""
    r = ctx.shared.get("cgroup_id_resolver")
    if r is None:
        r = ctx.shared["cgroup_id_resolver"] = CgroupIdResolver(ctx.layout.v2_root, ctx.clock)
    return r


# -- map reads -----------------------------------------------------------------

def read_hash(table, key_dtype: np.dtype, val_dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """All (key, value) pairs of a BPF hash map (bpfsys.BpfMap), copied out."""
    keys, vals = HashReader(table, key_dtype, val_dtype).read()
    return keys.copy(), vals.copy()


class HashReader:
    """Reads a whole BPF hash map with BPF_MAP_LOOKUP_BATCH into numpy buffers allocated once
    (one syscall per few thousand entries, no Python call per entry, no allocation of the
    map's size per read: only the pages the entries fill are ever touched)."""

    def __init__(self, table, key_dtype: np.dtype, val_dtype: np.dtype):
        self.table = table
        self.keys = np.empty(table.max_entries, dtype=key_dtype)
        self.vals = np.empty(table.max_entries, dtype=val_dtype)
        # hash maps use a u32 bucket index as the batch token (kernel/bpf/hashtab.c)
        self._in, self._out = ctypes.c_uint32(0), ctypes.c_uint32(0)
        self._call = BatchCall(table, MAP_LOOKUP_BATCH, self._in, self._out)

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys, values) views of the buffers, valid until the next read."""
        keys, vals = self.keys, self.vals
        k0, v0, ks, vs = keys.ctypes.data, vals.ctypes.data, keys.itemsize, vals.itemsize
        cap = len(keys)
        total = 0
        first = True
        while total < cap:
            done, err = self._call(k0 + total * ks, v0 + total * vs, cap - total, first)
            total += done
            if err:
                if err == errno.ENOENT:
                    break
                raise OSError(err, f"BPF_MAP_LOOKUP_BATCH on {self.table.name}: {os.strerror(err)}")
            first = False
            self._in.value = self._out.value
        return keys[:total], vals[:total]


class PerCpuSums:
    """Entries 0..n-1 of a per-CPU u64 array summed over CPUs, in one BPF_MAP_LOOKUP_BATCH
    into buffers allocated once."""

    def __init__(self, table, n: int):
        self.table, self.n = table, n
        self.keys = np.empty(n, dtype=np.uint32)
        self.vals = np.zeros((n, possible_cpus()), dtype=np.uint64)  # per CPU: 8-byte slots
        self._tok = ctypes.c_uint32(0)
        self._call = BatchCall(table, MAP_LOOKUP_BATCH, None, self._tok)

    def read(self) -> np.ndarray:
        done, err = self._call(self.keys.ctypes.data, self.vals.ctypes.data, self.n)
        if err and err != errno.ENOENT:
            raise OSError(err, f"BPF_MAP_LOOKUP_BATCH on {self.table.name}: {os.strerror(err)}")
        out = np.zeros(self.n, dtype=np.uint64)
        out[self.keys[:done]] = self.vals[:done].sum(axis=1, dtype=np.uint64)
        return out


def delete_keys(table, keys: np.ndarray) -> None:
    if len(keys) == 0:
        return
    keys = np.ascontiguousarray(keys)
    table.delete_batch(keys.ctypes.data, len(keys))


# -- base class ----------------------------------------------------------------

class BpfSource(BaseSource):
    """A source backed by one bcc program (HERE/<program>)."""

    program: ClassVar[str] = ""
    needs = ("root (CAP_BPF + CAP_PERFMON; CAP_SYS_ADMIN to mount tracefs when it is not mounted), "
             "bcc (python3-bpfcc), tracefs, kernel headers (linux-headers-<arch>)")
    # tracepoints the program attaches to, checked in start() for a precise reason
    tracepoints: ClassVar[tuple[str, ...]] = ()
    drop_reasons: ClassVar[tuple[str, ...]] = DROP_REASONS

    def __init__(self) -> None:
        super().__init__()
        self.bpf = None
        self.compile_ns: int | None = None
        self._drop_counts = [0] * len(DROP_REASONS)
        self._drops = None  # PerCpuSums of `drops`
        self._drops_raw = None  # its last read (sums and hash adds), to skip the stats when unchanged
        self.hash_adds: int | None = None  # adds to the program's hash, as of the last update_drops

    def probe(self, ctx: RecordContext) -> None:
        bpf_env.check_privileges()
        bpf_env.find_bcc()

    def cflags(self, ctx: RecordContext) -> list[str]:
        return [f"-DOWN_TGID={ctx.own_pid}"]

    def environment(self) -> dict:
        """bcc version, tracefs and the kernel headers this program was compiled against."""
        return {**bpf_env.bpf_environment(), "compile_ms": round(self.compile_ns / 1e6, 1) if self.compile_ns else None}

    def program_text(self, ctx: RecordContext) -> str:
        common = (HERE / "common.h").read_text()
        return common + "\n" + (HERE / self.program).read_text()

    def start(self, ctx: RecordContext) -> Batches:
        super().start(ctx)
        bpf_env.probe_bpf()
        for tp in self.tracepoints:
            bpf_env.tracepoint_format(*tp.split(":"))
        t0 = ctx.clock()
        folder, _ = bpf_env.find_bcc()
        try:
            self.bpf = load_program(self.program_text(ctx), self.cflags(ctx), folder)
        except LoadFailed as e:  # bcc's exception; the compiler's and the kernel's words are its stderr
            raise SourceUnavailable(f"compiling/loading {self.program} failed: {e}: {err_tail(e.stderr)}") from None
        finally:
            btf.forget()  # the cflags took their offsets (answers stay cached)
        self.compile_ns = ctx.clock() - t0
        ctx.shared.setdefault("bpf_compile_ns", {})[self.name] = self.compile_ns
        return []

    def update_drops(self) -> None:
        """Copy the program's in-kernel drop counters into stats."""
        if self.bpf is None:
            return
        if self._drops is None:
            try:
                self._drops = PerCpuSums(self.bpf[b"drops"], HASH_ADDS + 1)
            except KeyError:
                return
        raw = self._drops.read()
        if self._drops_raw is not None and np.array_equal(raw, self._drops_raw):
            return  # nothing dropped and nothing added since the last read: the stats hold
        self._drops_raw = raw
        *sums, self.hash_adds = raw.tolist()
        self._drop_counts = sums
        self.stats.dropped = sum(sums)
        reasons = [r for r, n in zip(DROP_REASONS, sums) if n]
        self.stats.drops_by_reason = {r: n for r, n in zip(DROP_REASONS, sums) if n}
        self.stats.drop_reason = ",".join(reasons) if reasons else None

    def detach(self) -> None:
        """Stop new events (detach all tracepoints) while keeping the maps readable."""
        if self.bpf is None:
            return
        for tp in list(getattr(self.bpf, "tracepoint_fds", {})):
            with contextlib.suppress(Exception):
                self.bpf.detach_tracepoint(tp)

    def close_bpf(self) -> None:
        if self.bpf is not None:
            with contextlib.suppress(Exception):
                self.bpf.cleanup()
            self.bpf = None
            self._drops = self._drops_raw = None


def err_tail(stderr: str, n: int = 400) -> str:
    text = " ".join(stderr.split())
    return text[-n:] if text else "(no message)"


__all__ = [
    "BpfSource",
    "CgroupIdResolver",
    "DROP_REASONS",
    "cgroup_id_paths",
    "parse_unistd",
    "HashReader",
    "PerCpuSums",
    "read_hash",
    "shared_resolver",
    "syscall_names",
]
