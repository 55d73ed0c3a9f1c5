"""The typed pieces of a manifest: clock, cgroup layout, recorder, sources, tables and their parts.

Each has `load(value, fields, ...)` (the validator: fields.py names the bad
field) and `to_dict()` (the JSON written to manifest.json).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from nodetape.tape.fields import INT64_MAX, MAX_BOOT_NS, MAX_OFFSET_NS, MAX_REAL_NS, PART_RE, Fields

# the writer stores at most this many pairs (format.MAX_CLOCK_PAIRS); a manifest claiming more was not
# written by it
MAX_PAIRS = 64
_HEX = re.compile(r"[0-9a-f]{64}")
# 2^22 is the kernel's PID_MAX_LIMIT
PID_MAX = 1 << 22


@dataclass
class Clock:
    boottime_ns: int
    realtime_ns: int
    offset_ns: int
    pairs: list[list[int]] = field(default_factory=list)  # [[boottime_ns, realtime_ns], ...] ("snapshots")

    @classmethod
    def load(cls, v, f: Fields) -> Clock:
        d = f.obj(v, "clock")
        off = f.int_(d.get("offset_ns"), "clock.offset_ns", -MAX_OFFSET_NS, MAX_OFFSET_NS)
        boot = f.boot_ns(d.get("boottime_ns"), "clock.boottime_ns")
        real = f.int_(d.get("realtime_ns"), "clock.realtime_ns", 0, MAX_REAL_NS, optional=True)
        snaps = d.get("snapshots")
        if snaps is None:
            snaps = []
        if not isinstance(snaps, list) or len(snaps) > MAX_PAIRS:
            raise f.bad("clock.snapshots", f"is not a list of at most {MAX_PAIRS} clock pairs")
        pairs = []
        for i, p in enumerate(snaps):
            if not isinstance(p, list) or len(p) != 2:
                raise f.bad(f"clock.snapshots[{i}]", "is not a [boottime_ns, realtime_ns] pair")
            b = f.boot_ns(p[0], f"clock.snapshots[{i}][0]", optional=False)
            r = f.int_(p[1], f"clock.snapshots[{i}][1]", 0, MAX_REAL_NS)
            if abs(r - b) > MAX_OFFSET_NS:
                raise f.bad(f"clock.snapshots[{i}]", "is out of range (offset beyond 2^62 ns)")
            pairs.append([b, r])
        boot = boot if boot is not None else (pairs[0][0] if pairs else 0)
        real = real if real is not None else boot + off
        if boot + off < 0:
            raise f.bad("clock.offset_ns", "dates the tape before 1970")
        return cls(boot, real, off, pairs)

    def to_dict(self) -> dict:
        return {"boottime_ns": self.boottime_ns, "realtime_ns": self.realtime_ns, "offset_ns": self.offset_ns,
                "snapshots": [list(p) for p in self.pairs]}

    def add_pair(self, pair: tuple[int, int], *, keep_from_ns: int | None, max_pairs: int, step_ns: int) -> bool:
        """Store (boottime, realtime) if the wall clock moved against boottime; True if stored.

        The list stays bounded: pairs older than `keep_from_ns` (the retention
        window) go, except the last one before it, which still dates the window's
        first rows; past `max_pairs`, the pair that changed the offset least goes.
        """
        snaps = self.pairs
        boot, real = pair
        stored = False
        if not snaps or abs((real - boot) - (snaps[-1][1] - snaps[-1][0])) >= step_ns:
            snaps.append([boot, real])
            stored = True
        if keep_from_ns is not None:
            while len(snaps) > 1 and snaps[1][0] <= keep_from_ns:
                snaps.pop(0)
        while len(snaps) > max_pairs:
            offs = [r - b for b, r in snaps]
            # never the first (dates the start) nor the last (the offset in effect now)
            i = min(range(1, len(snaps) - 1), key=lambda k: abs(offs[k] - offs[k - 1]))
            snaps.pop(i)
        return stored


@dataclass
class CgroupLayout:
    """The recorded cgroup root: its mode and, for v1/hybrid, each hierarchy's mount point."""

    mode: str | None = None
    root: str | None = None
    hierarchies: dict[str, str] = field(default_factory=dict)
    controllers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, v, f: Fields) -> CgroupLayout:
        d = f.obj(v, "cgroup", optional=True) or {}
        mode = f.text(d.get("mode"), "cgroup.mode", max_len=16)
        if mode is not None and mode not in ("v1", "v2", "hybrid", "none"):
            raise f.bad("cgroup.mode", "is not v1, v2, hybrid or none")
        hier = f.str_map(d.get("hierarchies") or {}, "cgroup.hierarchies",
                         lambda x, name: f.abs_path(x, name, optional=False))
        ctrl = f.str_map(d.get("controllers") or {}, "cgroup.controllers", lambda x, name: f.name(x, name))
        return cls(mode, f.abs_path(d.get("root"), "cgroup.root"), hier, ctrl)

    def to_dict(self) -> dict:
        d = {"mode": self.mode}
        if self.root is not None:
            d["root"] = self.root
        if self.hierarchies:
            d["hierarchies"] = dict(self.hierarchies)
        if self.controllers:
            d["controllers"] = dict(self.controllers)
        return d


@dataclass
class Recorder:
    """Who writes the tape (a live one): `nodetape snapshot` checks all of it before it signals."""

    pid: int
    start_ticks: int | None
    boot_id: str | None

    @classmethod
    def load(cls, v, f: Fields) -> Recorder | None:
        d = f.obj(v, "recorder", optional=True)
        if d is None:
            return None
        return cls(f.int_(d.get("pid"), "recorder.pid", 1, PID_MAX),
                   f.count(d.get("start_ticks"), "recorder.start_ticks"),
                   f.text(d.get("boot_id"), "recorder.boot_id", max_len=64))

    def to_dict(self) -> dict:
        return {"pid": self.pid, "start_ticks": self.start_ticks, "boot_id": self.boot_id}


_SOURCE_TEXT = ("status", "reason", "needs", "drop_reason")


@dataclass
class Source:
    status: str | None = None
    reason: str | None = None
    needs: str | None = None
    max_poll_ms: float | None = None
    tables: list[str] | None = None
    start_ns: int | None = None
    end_ns: int | None = None
    events: int | None = None
    dropped: int | None = None
    drop_reason: str | None = None
    environment: dict | None = None

    @classmethod
    def load(cls, v, f: Fields, key: str) -> Source:
        d = f.obj(v, key)
        texts = {k: f.text(d.get(k), f"{key}.{k}") for k in _SOURCE_TEXT}
        env = f.obj(d.get("environment"), f"{key}.environment", optional=True)
        return cls(**texts, max_poll_ms=f.number(d.get("max_poll_ms"), f"{key}.max_poll_ms"),
                   tables=f.names(d.get("tables"), f"{key}.tables"),
                   start_ns=f.boot_ns(d.get("start_ns"), f"{key}.start_ns"),
                   end_ns=f.boot_ns(d.get("end_ns"), f"{key}.end_ns"),
                   events=f.count(d.get("events"), f"{key}.events"),
                   dropped=f.count(d.get("dropped"), f"{key}.dropped"),
                   environment=f.json(env, f"{key}.environment"))

    def to_dict(self) -> dict:
        return {"status": self.status, "reason": self.reason, "needs": self.needs, "max_poll_ms": self.max_poll_ms,
                "tables": self.tables, "start_ns": self.start_ns, "end_ns": self.end_ns, "events": self.events,
                "dropped": self.dropped, "drop_reason": self.drop_reason, "environment": self.environment}


@dataclass
class PartSum:
    """What the writer knew of a part when it renamed it into place."""

    bytes: int
    rows: int
    blake2b: str  # hex of hashlib.blake2b(file bytes, digest_size=32)

    def to_dict(self) -> dict:
        return {"bytes": self.bytes, "rows": self.rows, "blake2b": self.blake2b}


@dataclass
class TableEntry:
    rows: int = 0
    bytes: int = 0
    parts: list[str] = field(default_factory=list)
    first_part: int | None = None
    dropped: int | None = None
    drop_reasons: dict[str, int] | None = None
    sums: dict[str, PartSum] = field(default_factory=dict)  # "checksums" (format 2)

    @classmethod
    def load(cls, v, f: Fields, key: str) -> TableEntry:
        d = f.obj(v, key)
        parts = d.get("parts") or []
        if not isinstance(parts, list):
            raise f.bad(f"{key}.parts", "is not a list")
        parts = [f.part(p, f"{key}.parts[{i}]") for i, p in enumerate(parts)]
        if len(set(parts)) != len(parts):
            raise f.bad(f"{key}.parts", "names a part twice")
        reasons = f.obj(d.get("drop_reasons"), f"{key}.drop_reasons", optional=True)
        if reasons is not None:
            reasons = {str(k): f.count(n, f"{key}.drop_reasons.{k}", optional=False) for k, n in reasons.items()}
        sums = {}
        for name, s in (f.obj(d.get("checksums"), f"{key}.checksums", optional=True) or {}).items():
            where = f"{key}.checksums.{name}"
            if name not in parts:
                raise f.bad(where, "is a checksum of a part the table does not name")
            s = f.obj(s, where)
            digest = s.get("blake2b")
            if not isinstance(digest, str) or not _HEX.fullmatch(digest):
                raise f.bad(f"{where}.blake2b", "is not a 64-digit hex BLAKE2b digest")
            sums[name] = PartSum(f.count(s.get("bytes"), f"{where}.bytes", optional=False),
                                 f.count(s.get("rows"), f"{where}.rows", optional=False), digest)
        return cls(f.count(d.get("rows"), f"{key}.rows") or 0, f.count(d.get("bytes"), f"{key}.bytes") or 0,
                   parts, f.int_(d.get("first_part"), f"{key}.first_part", 0, 10**12, optional=True),
                   f.count(d.get("dropped"), f"{key}.dropped"), reasons, sums)

    def to_dict(self) -> dict:
        d: dict = {"rows": self.rows, "bytes": self.bytes, "parts": list(self.parts)}
        if self.first_part is not None:
            d["first_part"] = self.first_part
        if self.dropped is not None:
            d["dropped"] = self.dropped
        if self.drop_reasons is not None:
            d["drop_reasons"] = dict(self.drop_reasons)
        if self.sums:
            d["checksums"] = {n: s.to_dict() for n, s in self.sums.items()}
        return d

    def add(self, name: str, rows: int, nbytes: int, blake2b: str | None) -> None:
        self.rows += rows
        self.bytes += nbytes
        self.parts.append(name)
        if blake2b is not None:
            self.sums[name] = PartSum(nbytes, rows, blake2b)

    def replace(self, inputs: list[str], input_bytes: int, output: str, nbytes: int, rows: int,
                blake2b: str | None) -> None:
        """The compacted part `output` where its inputs were (parts stay in time order); same rows."""
        at = min(self.parts.index(n) for n in inputs)
        self.parts = [n for n in self.parts if n not in inputs]
        self.parts.insert(at, output)
        for n in inputs:
            self.sums.pop(n, None)
        self.bytes += nbytes - input_bytes
        if blake2b is not None:
            self.sums[output] = PartSum(nbytes, rows, blake2b)

    def retire(self, name: str, index: int, rows: int, nbytes: int) -> None:
        if name in self.parts:
            self.parts.remove(name)
        self.sums.pop(name, None)
        self.rows -= rows
        self.bytes -= nbytes
        # parts are retired oldest first, so one number says which files on disk are gone
        self.first_part = max(self.first_part or 0, index + 1)


assert INT64_MAX > MAX_BOOT_NS + MAX_OFFSET_NS  # boottime + offset never overflows int64
assert PART_RE.fullmatch("part-000000.parquet")
