"""Loaded eBPF programs held by descriptor, read and written with bpf(2): no libbcc here.

The recorder compiles each program in a child process (loader.py) and keeps
only what the kernel needs to keep it running: the descriptors of its maps and
of its attachments (a tracepoint's perf event, a raw tracepoint's link), each
holding a reference to the program, and the program one to each map it uses.
So libbcc, libclang and libLLVM are never mapped in the recorder (docs/idle.md,
"Memory"). This module gives the sources the few operations of bcc's BPF and
Table objects they use, over those descriptors:

- LoadedProgram: prog[name] -> BpfMap; tracepoint_fds / raw_tracepoint_fds and
  their detach; cleanup(); ksym() for the drop locations;
- BpfMap: map_fd, max_entries; m[key] = leaf, del m[key] (ctypes objects, as
  with bcc), lookup(), lookup_batch(), delete_batch().

Layouts: union bpf_attr in include/uapi/linux/bpf.h (6.1).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import fcntl
import os
import platform

_SYS_BPF = {"x86_64": 321, "aarch64": 280}
MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM, MAP_DELETE_ELEM = 1, 2, 3
MAP_LOOKUP_BATCH, MAP_DELETE_BATCH = 24, 27
PERF_EVENT_IOC_DISABLE = 0x2401
_libc = None
_nr = None


def _bpf(cmd: int, attr: ctypes.Array) -> int:
    """bpf(cmd, attr, sizeof attr); raises OSError with the kernel's errno."""
    global _libc, _nr
    if _libc is None:
        nr = _SYS_BPF.get(platform.machine())
        if nr is None:
            raise OSError(errno.ENOSYS, f"no bpf(2) number known for {platform.machine()}")
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _libc.syscall.restype = ctypes.c_long
        _nr = ctypes.c_long(nr)
    res = _libc.syscall(_nr, ctypes.c_long(cmd), attr, ctypes.c_uint(len(attr)))
    if res < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return res


def _addr(obj) -> int:
    return 0 if obj is None else (obj if isinstance(obj, int) else ctypes.addressof(obj))


@functools.lru_cache(maxsize=None)
def possible_cpus(path: str = "/sys/devices/system/cpu/possible") -> int:
    """How many per-CPU slots a per-CPU map value has ('0-3' -> 4; '0,2-3' -> 4)."""
    with open(path) as f:
        last = f.read().strip().split(",")[-1]
    return int(last.split("-")[-1]) + 1


class BpfMap:
    """A BPF map by descriptor, with its shape as libbcc declared it."""

    def __init__(self, fd: int, name: str, map_type: int, key_size: int, value_size: int, max_entries: int):
        self.map_fd, self.name, self.map_type = fd, name, map_type
        self.key_size, self.value_size, self.max_entries = key_size, value_size, max_entries

    def _elem(self, cmd: int, key, value=None, flags: int = 0) -> None:
        attr = ctypes.create_string_buffer(32)
        ctypes.c_uint32.from_buffer(attr, 0).value = self.map_fd
        ctypes.c_uint64.from_buffer(attr, 8).value = _addr(key)
        ctypes.c_uint64.from_buffer(attr, 16).value = _addr(value)
        ctypes.c_uint64.from_buffer(attr, 24).value = flags
        _bpf(cmd, attr)

    def lookup(self, key, value) -> bool:
        """Fill `value` (a ctypes object of the map's value size, per CPU for per-CPU maps)."""
        try:
            self._elem(MAP_LOOKUP_ELEM, key, value)
        except FileNotFoundError:
            return False
        return True

    def __setitem__(self, key, leaf) -> None:
        self._elem(MAP_UPDATE_ELEM, key, leaf)

    def __delitem__(self, key) -> None:
        try:
            self._elem(MAP_DELETE_ELEM, key)
        except FileNotFoundError:
            raise KeyError(key) from None

    def _batch(self, cmd: int, in_tok, out_tok, keys: int, values: int, count: int) -> tuple[int, int]:
        """One BPF_MAP_*_BATCH call: (entries done, errno or 0)."""
        attr = ctypes.create_string_buffer(56)
        ctypes.c_uint64.from_buffer(attr, 0).value = _addr(in_tok)
        ctypes.c_uint64.from_buffer(attr, 8).value = _addr(out_tok)
        ctypes.c_uint64.from_buffer(attr, 16).value = keys
        ctypes.c_uint64.from_buffer(attr, 24).value = values
        ctypes.c_uint32.from_buffer(attr, 32).value = count
        ctypes.c_uint32.from_buffer(attr, 36).value = self.map_fd
        try:
            _bpf(cmd, attr)
            err = 0
        except OSError as e:
            err = e.errno
        return ctypes.c_uint32.from_buffer(attr, 32).value, err

    def lookup_batch(self, in_tok, out_tok, keys: int, values: int, count: int) -> tuple[int, int]:
        """BPF_MAP_LOOKUP_BATCH from token in_tok (None: the start) into the buffers at keys/values."""
        return self._batch(MAP_LOOKUP_BATCH, in_tok, out_tok, keys, values, count)

    def delete_batch(self, keys: int, count: int) -> tuple[int, int]:
        return self._batch(MAP_DELETE_BATCH, None, None, keys, 0, count)


class BatchCall:
    """A BPF_MAP_*_BATCH call prepared once for a map and its token buffers: each call sets the
    count and the buffers and enters the kernel, so a poll's reads build no ctypes objects."""

    def __init__(self, bmap: BpfMap, cmd: int, in_tok, out_tok):
        self.cmd = cmd
        self.attr = ctypes.create_string_buffer(56)
        self._in = _addr(in_tok)
        self._in_batch = ctypes.c_uint64.from_buffer(self.attr, 0)
        ctypes.c_uint64.from_buffer(self.attr, 8).value = _addr(out_tok)
        self._keys = ctypes.c_uint64.from_buffer(self.attr, 16)
        self._values = ctypes.c_uint64.from_buffer(self.attr, 24)
        self._count = ctypes.c_uint32.from_buffer(self.attr, 32)
        ctypes.c_uint32.from_buffer(self.attr, 36).value = bmap.map_fd

    def __call__(self, keys: int, values: int, count: int, first: bool = True) -> tuple[int, int]:
        """(entries done, errno or 0); first: from the start, else from the in token."""
        self._in_batch.value = 0 if first else self._in
        self._keys.value, self._values.value, self._count.value = keys, values, count
        try:
            _bpf(self.cmd, self.attr)
            err = 0
        except OSError as e:
            err = e.errno
        return self._count.value, err


class LoadedProgram:
    """What is left of a bcc BPF object once loaded: maps and attachments by descriptor."""

    def __init__(self, maps: dict[bytes, BpfMap], tracepoint_fds: dict[bytes, int],
                 raw_tracepoint_fds: dict[bytes, int], other_fds: list[int]):
        self.maps = maps
        self.tracepoint_fds = tracepoint_fds
        self.raw_tracepoint_fds = raw_tracepoint_fds
        self._other_fds = other_fds  # the programs' own descriptors (the attachments keep them alive too)

    def __getitem__(self, name: bytes) -> BpfMap:
        return self.maps[name]

    def detach_tracepoint(self, tp: bytes) -> None:
        """As bcc does (bpf_close_perf_event_fd): disable the perf event, then close it."""
        fd = self.tracepoint_fds.pop(tp)
        try:
            fcntl.ioctl(fd, PERF_EVENT_IOC_DISABLE, 0)
        finally:
            os.close(fd)

    def detach_raw_tracepoint(self, tp: bytes) -> None:
        os.close(self.raw_tracepoint_fds.pop(tp))

    def cleanup(self) -> None:
        """Detach everything, then close the maps' and programs' descriptors."""
        for tp in list(self.tracepoint_fds):
            self.detach_tracepoint(tp)
        for tp in list(self.raw_tracepoint_fds):
            self.detach_raw_tracepoint(tp)
        for fd in [m.map_fd for m in self.maps.values()] + self._other_fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.maps, self._other_fds = {}, []

    @staticmethod
    def ksym(addr: int, show_offset: bool = False) -> bytes:
        return ksyms([addr], show_offset)[addr]


def kallsyms_lookup(addrs: list[int], path: str = "/proc/kallsyms") -> dict[int, tuple[str, int]]:
    """Kernel address -> (symbol, offset) of the nearest text symbol at or below it (the first
    in file order among equal addresses), for a few addresses: one read of kallsyms, parsed with
    numpy (a Python loop over its ~120k lines cost as much as the read itself); only the few
    names wanted are decoded, and nothing is kept (no table of every symbol)."""
    import numpy as np

    with open(path, "rb") as f:
        data = f.read()
    if not data:
        return {}
    buf = np.frombuffer(data, dtype=np.uint8)
    width = data.index(b" ")  # hex digits of an address: 16 on 64-bit kernels
    starts = np.concatenate(([0], np.flatnonzero(buf[:-1] == 10) + 1))
    starts = starts[starts + width + 2 < len(buf)]
    text = (buf[starts + width] == 32) & np.isin(buf[starts + width + 1], np.frombuffer(b"tTwW", np.uint8))
    starts = starts[text]
    lut = np.zeros(256, dtype=np.uint64)
    lut[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16, dtype=np.uint64)
    lut[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16, dtype=np.uint64)
    a = np.zeros(len(starts), dtype=np.uint64)
    for j in range(width):
        a = (a << np.uint64(4)) | lut[buf[starts + j]]
    out: dict[int, tuple[str, int]] = {}
    for x in sorted(set(addrs)):
        below = np.where(a <= np.uint64(x), a, np.uint64(0))  # 0 (hidden addresses, none below) never wins
        i = int(below.argmax()) if len(a) else 0
        if not len(a) or below[i] == 0:
            continue
        s = int(starts[i]) + width + 3
        e = data.find(b"\n", s)
        out[x] = (data[s:e if e >= 0 else len(data)].split(None, 1)[0].decode(), x - int(a[i]))
    return out


_KSYMS: dict[tuple[int, bool], bytes] = {}


def ksyms(addrs: list[int], show_offset: bool = False) -> dict[int, bytes]:
    """addr -> b'kfree_skb_reason+0x4b' (b'kfree_skb_reason' without show_offset) as bcc's
    BPF.ksym gives it, b'[unknown]' when no symbol covers it; one kallsyms pass for the new ones."""
    new = [a for a in set(addrs) if (a, show_offset) not in _KSYMS]
    if new:
        found = kallsyms_lookup(new)
        for a in new:
            hit = found.get(a)
            text = "[unknown]" if hit is None else (f"{hit[0]}+{hit[1]:#x}" if show_offset else hit[0])
            _KSYMS[(a, show_offset)] = text.encode()
    return {a: _KSYMS[(a, show_offset)] for a in addrs}
