"""The tape manifest: a typed `Manifest` whose loader is the validator.

What was recorded, where, when, by which sources, what was lost, and (format 2)
each part's size, row count and BLAKE2b checksum. Written at start, rewritten
atomically (temp file, fsync, rename) on every flush and at stop, so a reader
always finds a complete JSON document.

Reading: `Manifest.from_dict` checks every field's type and range (fields.py)
and raises one TapeError naming the manifest file and the field, so a damaged,
foreign or hostile manifest never reaches the code above as a KeyError, a huge
number or a path that climbs. Writing: only the tape writer (and its retention
ledger) changes a manifest, through the methods below; new tapes, slices and
snapshots are all made by `Manifest.new` / `Manifest.derived`.

Callers that still index it like the JSON (`m["clock"]["offset_ns"]`) get a
read-only view: a Manifest is a Mapping over `to_dict()`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nodetape.core.errors import TapeError
from nodetape.core.version import __version__
from nodetape.tape.fields import MAX_BOOT_NS, MAX_OFFSET_NS, Fields  # noqa: F401 (re-exported)
from nodetape.tape.parts import CgroupLayout, Clock, Recorder, Source, TableEntry

MANIFEST = "manifest.json"
FORMAT = "nodetape-tape"
# 1: no part checksums (tapes before 2026-12); 2: tables.*.checksums; 3: compacted parts
# part-AAAAAA-BBBBBB.parquet (see schemas/CHANGES.md)
FORMAT_VERSION = 3

# Clock pairs kept in a manifest. A pair is stored only when the wall clock moved
# against CLOCK_BOOTTIME (an NTP step or a long slew), so a handful is normal;
# views turn them into a CASE expression, which must stay short to stay fast.
MAX_CLOCK_PAIRS = 64
# A change of realtime - boottime smaller than this is not worth a pair: it is
# below the microsecond precision of `ts` times a thousand, and NTP slews ~50 ppm.
CLOCK_STEP_NS = 1_000_000

# top-level keys written always, and when set; anything else is kept (validated JSON) in `extra`
_ALWAYS = ("format", "format_version", "nodetape_version", "schema_version", "host", "clock", "cgroup", "options",
           "start_ns", "end_ns", "closed", "sources", "tables")
_OPTIONAL = ("recorder", "last_flush_ns", "retention", "disk_full", "snapshot", "snapshots", "writer", "stop_reason",
             "slice", "push")
_KNOWN = ("format", "format_version", "nodetape_version", "schema_version", "host", "clock", "cgroup",
          "options", "start_ns", "end_ns", "closed", "sources", "tables", "recorder", "last_flush_ns",
          "retention", "disk_full", "snapshot", "snapshots", "writer", "stop_reason", "slice", "push")


@dataclass(eq=False)
class Manifest(Mapping):
    schema_version: str
    clock: Clock
    format_version: int = FORMAT_VERSION
    nodetape_version: str | None = None
    host: dict = field(default_factory=dict)
    cgroup: CgroupLayout = field(default_factory=CgroupLayout)
    options: dict = field(default_factory=dict)
    start_ns: int | None = None
    end_ns: int | None = None
    last_flush_ns: int | None = None
    closed: bool = False
    sources: dict[str, Source] = field(default_factory=dict)
    tables: dict[str, TableEntry] = field(default_factory=dict)
    recorder: Recorder | None = None
    retention: dict | None = None
    disk_full: dict | None = None
    snapshot: dict | None = None
    snapshots: list[dict] | None = None
    writer: dict | None = None
    stop_reason: str | None = None
    slice: dict | None = None
    push: dict | None = None  # record --push: parts, bytes, failures, pending (store/pusher.py)
    extra: dict = field(default_factory=dict)

    # -- constructors ------------------------------------------------------------
    @classmethod
    def new(cls, *, host: dict, clock_pair: tuple[int, int], cgroup: dict, options: dict,
            schema_version: str, recorder: dict | None = None) -> Manifest:
        """The manifest of a new recording, checked like a loaded one."""
        boot_ns, real_ns = clock_pair
        return cls.from_dict({
            "format": FORMAT, "format_version": FORMAT_VERSION, "nodetape_version": __version__,
            "schema_version": schema_version, "host": host,
            "clock": {"boottime_ns": boot_ns, "realtime_ns": real_ns, "offset_ns": real_ns - boot_ns,
                      "snapshots": [[boot_ns, real_ns]]},
            "cgroup": cgroup, "options": options, "start_ns": boot_ns, "end_ns": None, "closed": False,
            "sources": {}, "tables": {}, "recorder": recorder,
        }, "<new manifest>")

    @classmethod
    def derived(cls, src: Manifest, *, start_ns: int | None, schema_version: str | None = None,
                slice: dict | None = None, snapshot: dict | None = None) -> Manifest:
        """A new tape made from `src` (a slice or a snapshot): same host, clock, cgroup layout,
        options and sources; no parts yet, no recorder, no history of the source's own."""
        return cls(schema_version=schema_version or src.schema_version, clock=copy.deepcopy(src.clock),
                   nodetape_version=src.nodetape_version, host=copy.deepcopy(src.host),
                   cgroup=copy.deepcopy(src.cgroup), options=copy.deepcopy(src.options), start_ns=start_ns,
                   sources=copy.deepcopy(src.sources), slice=copy.deepcopy(slice), snapshot=copy.deepcopy(snapshot))

    @classmethod
    def from_dict(cls, data, where: str) -> Manifest:
        f = Fields(where)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise TapeError(f"{where}: not a nodetape manifest", where)
        version = f.int_(data.get("format_version", 1), "format_version", 1, 2**31)
        if version > FORMAT_VERSION:
            raise TapeError(f"{where}: tape format {version} is newer than this nodetape reads "
                            f"({FORMAT_VERSION}); upgrade nodetape", where)
        g = data.get
        return cls(
            format_version=version,
            schema_version=f.text(g("schema_version"), "schema_version", optional=False, max_len=64),
            nodetape_version=f.text(g("nodetape_version"), "nodetape_version", max_len=64),
            host=f.json(f.obj(g("host"), "host", optional=True) or {}, "host"),
            clock=Clock.load(g("clock"), f),
            cgroup=CgroupLayout.load(g("cgroup"), f),
            options=f.json(f.obj(g("options"), "options", optional=True) or {}, "options"),
            start_ns=f.boot_ns(g("start_ns"), "start_ns"),
            end_ns=f.boot_ns(g("end_ns"), "end_ns"),
            last_flush_ns=f.boot_ns(g("last_flush_ns"), "last_flush_ns"),
            closed=bool(f.boolean(g("closed"), "closed")),
            sources={f.name(k, f"sources key {k!r}"): Source.load(v, f, f"sources.{k}")
                     for k, v in f.obj(g("sources"), "sources").items()},
            tables={f.table(k, f"tables key {k!r}"): TableEntry.load(v, f, f"tables.{k}")
                    for k, v in f.obj(g("tables"), "tables").items()},
            recorder=Recorder.load(g("recorder"), f),
            retention=_int_dict(f, g("retention"), "retention"),
            disk_full=_disk_full(f, g("disk_full")),
            snapshot=_snapshot_of(f, g("snapshot")),
            snapshots=_snapshots(f, g("snapshots")),
            writer=_writer(f, g("writer")),
            stop_reason=f.text(g("stop_reason"), "stop_reason"),
            slice=f.json(f.obj(g("slice"), "slice", optional=True), "slice"),
            push=f.json(f.obj(g("push"), "push", optional=True), "push"),
            extra={k: f.json(v, k) for k, v in data.items() if k not in _KNOWN},
        )

    # -- the JSON document -------------------------------------------------------
    def _keys(self) -> list[str]:
        optional = [k for k in _OPTIONAL if getattr(self, k) is not None]
        return [*_ALWAYS, *optional, *self.extra]

    def __getitem__(self, key):
        """One top-level value as it is in the JSON (read-only view for dict-style callers)."""
        if key in self.extra:
            return self.extra[key]
        if key == "format":
            return FORMAT
        if key in _ALWAYS or (key in _OPTIONAL and getattr(self, key) is not None):
            v = getattr(self, key)
            if key in ("sources", "tables"):
                return {k: x.to_dict() for k, x in v.items()}
            return v.to_dict() if hasattr(v, "to_dict") else v
        raise KeyError(key)

    def to_dict(self) -> dict:
        return {k: self[k] for k in self._keys()}

    def __iter__(self):
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    def pop(self, key: str, default=None):
        """Clear an optional field (compat for callers that edited the dict)."""
        if key in self.extra:
            return self.extra.pop(key)
        if key in _KNOWN and key not in ("format", "clock", "schema_version", "sources", "tables"):
            old = getattr(self, key, default)
            setattr(self, key, None if key not in ("host", "options") else {})
            return old
        return default

    # -- what the writer changes -----------------------------------------------
    def table(self, name: str) -> TableEntry:
        return self.tables.setdefault(name, TableEntry())

    def add_part(self, table: str, name: str, rows: int, nbytes: int, blake2b: str | None) -> None:
        self.table(table).add(name, rows, nbytes, blake2b)

    def retire_part(self, table: str, name: str, index: int, rows: int, nbytes: int) -> None:
        self.table(table).retire(name, index, rows, nbytes)
        r = self.retention = self.retention or {}
        for k, n in (("retired_parts", 1), ("retired_rows", rows), ("retired_bytes", nbytes)):
            r[k] = (r.get(k) or 0) + n

    def replace_parts(self, table: str, inputs: list[str], input_bytes: int, output: str, nbytes: int,
                      rows: int, blake2b: str | None) -> None:
        """A compacted part in place of its inputs (same rows, new bytes); not a retirement."""
        self.table(table).replace(inputs, input_bytes, output, nbytes, rows, blake2b)

    def set_bounds(self, retain_ns: int | None, max_bytes: int | None) -> None:
        self.retention = {"retain_ns": retain_ns, "max_bytes": max_bytes,
                          "retired_parts": 0, "retired_rows": 0, "retired_bytes": 0}

    def set_sources(self, sources: dict[str, dict]) -> None:
        """Checked like a loaded manifest's; a source whose JSON equals its checked copy (compared
        with the copy, so a dict changed in place is seen) keeps it: the recorder sends every
        source at every flush, most unchanged, and checking walks each one's environment."""
        f = Fields("<recorder>")
        old = self.sources
        self.sources = {k: (old[k] if k in old and old[k].to_dict() == v else Source.load(v, f, f"sources.{k}"))
                        for k, v in sources.items()}

    def set_drops(self, table: str, reasons: dict[str, int]) -> None:
        t = self.table(table)
        t.dropped, t.drop_reasons = sum(reasons.values()), dict(reasons)

    def note_disk_full(self, at_ns: int, **kw) -> dict:
        d = self.disk_full = self.disk_full or {"at_ns": at_ns, "fatal": False}
        d.update(kw)
        return d

    def add_clock_pair(self, pair: tuple[int, int], *, keep_from_ns: int | None = None) -> bool:
        return self.clock.add_pair(pair, keep_from_ns=keep_from_ns, max_pairs=MAX_CLOCK_PAIRS,
                                   step_ns=CLOCK_STEP_NS)

    def close(self, end_ns: int | None) -> None:
        self.end_ns, self.closed = end_ns, True


def _int_dict(f: Fields, v, key: str) -> dict | None:
    d = f.obj(v, key, optional=True)
    if d is None:
        return None
    return {k: f.int_(x, f"{key}.{k}", optional=True) for k, x in d.items()}


def _disk_full(f: Fields, v) -> dict | None:
    d = f.obj(v, "disk_full", optional=True)
    if d is None:
        return None
    out = f.json(d, "disk_full")
    for k in ("action", "reason"):
        f.text(d.get(k), f"disk_full.{k}")
    f.boot_ns(d.get("at_ns"), "disk_full.at_ns")
    f.count(d.get("evicted_parts"), "disk_full.evicted_parts")
    f.boolean(d.get("fatal"), "disk_full.fatal")
    return out


def _snapshot_of(f: Fields, v) -> dict | None:
    d = f.obj(v, "snapshot", optional=True)
    if d is None:
        return None
    for k in ("of", "reason"):
        f.text(d.get(k), f"snapshot.{k}")
    f.boot_ns(d.get("taken_ns"), "snapshot.taken_ns")
    return f.json(d, "snapshot")


def _snapshots(f: Fields, v) -> list[dict] | None:
    if v is None:
        return None
    if not isinstance(v, list) or len(v) > 1000:
        raise f.bad("snapshots", "is not a list of at most 1000 objects")
    for i, s in enumerate(v):
        f.obj(s, f"snapshots[{i}]")
        for k in ("path", "reason", "error"):
            f.text(s.get(k), f"snapshots[{i}].{k}")
        f.boot_ns(s.get("taken_ns"), f"snapshots[{i}].taken_ns")
    return f.json(v, "snapshots")


def _writer(f: Fields, v) -> dict | None:
    d = f.obj(v, "writer", optional=True)
    if d is None:
        return None
    dropped = f.obj(d.get("dropped"), "writer.dropped", optional=True) or {}
    for t, reasons in dropped.items():
        for r, n in f.obj(reasons, f"writer.dropped.{t}").items():
            f.count(n, f"writer.dropped.{t}.{r}", optional=False)
    return f.json(d, "writer")


def new_manifest(*, host: dict, clock_pair: tuple[int, int], cgroup: dict, options: dict,
                 schema_version: str) -> Manifest:
    return Manifest.new(host=host, clock_pair=clock_pair, cgroup=cgroup, options=options,
                        schema_version=schema_version)


def add_clock_pair(manifest: Manifest, pair: tuple[int, int], *, keep_from_ns: int | None = None) -> bool:
    """Store (boottime, realtime) if the wall clock moved against boottime; True if stored (see Clock.add_pair)."""
    return manifest.add_clock_pair(pair, keep_from_ns=keep_from_ns)


def read_manifest(tape: Path) -> Manifest:
    path = tape / MANIFEST
    if not tape.exists():
        raise TapeError(f"{tape}: no such tape", str(tape))
    if not tape.is_dir():
        raise TapeError(f"{tape}: not a tape folder", str(tape))
    try:
        with open(path, "rb") as fh:
            raw = fh.read(64 << 20)  # a manifest is kilobytes; never read an unbounded file
        text = raw.decode()
    except FileNotFoundError:
        raise TapeError(f"{path}: missing manifest (not a nodetape tape?)", str(path)) from None
    except UnicodeDecodeError as e:
        raise TapeError(f"{path}: malformed manifest (not UTF-8: {e.reason})", str(path)) from None
    except OSError as e:
        raise TapeError(f"{path}: cannot read manifest: {e.strerror}", str(path)) from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise TapeError(f"{path}: malformed manifest JSON ({first})", str(path)) from None
    return Manifest.from_dict(data, str(path))


__all__ = ["CLOCK_STEP_NS", "FORMAT", "FORMAT_VERSION", "MANIFEST", "MAX_BOOT_NS", "MAX_CLOCK_PAIRS",
           "MAX_OFFSET_NS", "Manifest", "add_clock_pair", "new_manifest", "read_manifest"]
