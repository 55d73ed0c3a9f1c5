"""Struct member offsets of the running kernel, read from its BTF.

The only headers here are Debian's 6.1 ones while the kernel is 6.18, so a
struct field read through the headers' layout would read the wrong bytes.
The kernel describes its own layout in /sys/kernel/btf/vmlinux; we read the
few offsets we need (task_struct.exit_code, sk_buff.dev, net_device.ifindex)
from it and pass them to the BPF program as constants. It also gives the type
id of a kernel function (BTF_KIND_FUNC), which an fentry program names.

Format: Documentation/bpf/btf.rst (header, type section, string section).
"""

from __future__ import annotations

import functools
import struct
from pathlib import Path

VMLINUX = Path("/sys/kernel/btf/vmlinux")

_STRUCT, _UNION, _FUNC = 4, 5, 12
# extra bytes after the 12-byte btf_type, per kind: (fixed, per vlen item)
_EXTRA = {1: (4, 0), 3: (12, 0), 4: (0, 12), 5: (0, 12), 6: (0, 8), 13: (0, 8), 14: (4, 0),
          15: (0, 12), 17: (4, 0), 19: (0, 12)}
# kinds whose third word is a type id to follow (typedef, volatile, const, restrict, type_tag)
_MODIFIERS = {8, 9, 10, 11, 18}


class Btf:
    def __init__(self, data: bytes):
        magic, _ver, _flags, hdr_len, type_off, type_len, str_off, _str_len = struct.unpack_from("<HBBIIIII", data)
        if magic != 0xEB9F:
            raise ValueError("not BTF data")
        self.data = data
        self.strs = hdr_len + str_off
        self.offsets = [0]  # type id -> byte offset of its btf_type (id 0 is void)
        pos, end = hdr_len + type_off, hdr_len + type_off + type_len
        unpack = struct.unpack_from
        while pos < end:
            self.offsets.append(pos)
            info = unpack("<I", data, pos + 4)[0]
            fixed, per = _EXTRA.get(info >> 24 & 0x1F, (0, 0))
            pos += 12 + fixed + per * (info & 0xFFFF)
        self._by_name: dict[str, list[int]] | None = None

    def name(self, off: int) -> str:
        end = self.data.index(b"\0", self.strs + off)
        return self.data[self.strs + off:end].decode()

    def _type(self, tid: int) -> tuple[int, int, int, int, int]:
        pos = self.offsets[tid]
        name_off, info, size_type = struct.unpack_from("<III", self.data, pos)
        return name_off, info >> 24 & 0x1F, info & 0xFFFF, size_type, pos

    def struct_ids(self, name: str) -> list[int]:
        if self._by_name is None:
            idx: dict[str, list[int]] = {}
            for tid in range(1, len(self.offsets)):
                name_off, kind, vlen, _, _ = self._type(tid)
                if kind in (_STRUCT, _UNION) and name_off:
                    idx.setdefault(self.name(name_off), []).append(tid)
            self._by_name = idx
        return self._by_name.get(name, [])

    def func_id(self, name: str) -> int | None:
        """The type id of kernel function `name` (what an fentry program attaches to), if the kernel has it."""
        want, data, strs, unpack = name.encode() + b"\0", self.data, self.strs, struct.unpack_from
        for tid, pos in enumerate(self.offsets[1:], 1):
            name_off, info = unpack("<II", data, pos)
            if info >> 24 & 0x1F == _FUNC and data.startswith(want, strs + name_off):
                return tid
        return None

    def _resolve(self, tid: int) -> int:
        while tid:
            _, kind, _, size_type, _ = self._type(tid)
            if kind not in _MODIFIERS:
                return tid
            tid = size_type
        return tid

    def _members(self, tid: int):
        name_off, kind, vlen, _, pos = self._type(tid)
        kind_flag = struct.unpack_from("<I", self.data, pos + 4)[0] >> 31
        for i in range(vlen):
            m_name, m_type, m_off = struct.unpack_from("<III", self.data, pos + 12 + 12 * i)
            bit_off = m_off & 0xFFFFFF if kind_flag else m_off
            yield (self.name(m_name) if m_name else ""), m_type, bit_off

    def member_offset(self, struct_name: str, member: str) -> int | None:
        """Byte offset of `member` in `struct struct_name`, looking into anonymous
        unions and structs; None when the kernel has no such member."""
        for tid in self.struct_ids(struct_name):
            off = self._find(tid, member)
            if off is not None:
                return off
        return None

    def _find(self, tid: int, member: str, base_bits: int = 0) -> int | None:
        for name, m_type, bit_off in self._members(tid):
            if name == member:
                return (base_bits + bit_off) // 8
            if not name:
                inner = self._resolve(m_type)
                if self._type(inner)[1] in (_STRUCT, _UNION):
                    off = self._find(inner, member, base_bits + bit_off)
                    if off is not None:
                        return off
        return None


@functools.lru_cache(maxsize=1)
def vmlinux_btf() -> Btf | None:
    """The running kernel's BTF, parsed once until forget()."""
    try:
        return Btf(VMLINUX.read_bytes())
    except (OSError, ValueError):
        return None


def forget() -> None:
    """Drop the parsed BTF (~11 MiB: the file and its type and name indexes) once a source has
    what it needs: answers stay cached (member_offset), a new question parses again (~0.1 s)."""
    vmlinux_btf.cache_clear()


def member_offset(struct_name: str, member: str) -> int | None:
    return _member_offset(str(VMLINUX), struct_name, member)


@functools.lru_cache(maxsize=None)
def _member_offset(path: str, struct_name: str, member: str) -> int | None:
    """Answers cached per BTF file (a test points VMLINUX elsewhere)."""
    btf = vmlinux_btf()
    return btf.member_offset(struct_name, member) if btf else None
