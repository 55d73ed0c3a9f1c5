"""The tape manifest: what was recorded, where, when, by which sources, and what was lost.

Written at start, rewritten atomically (temp file, fsync, rename) on every flush
and at stop, so a reader always finds a complete JSON document. When even the
temp file cannot be written (disk full), the previous manifest stays in place.

Reading is defensive: every field a reader or `nodetape info` uses is checked
here, so a damaged or foreign manifest is one TapeError naming the file and the
field, never a KeyError or TypeError further down.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from nodetape.core.errors import TapeError
from nodetape.core.version import __version__

MANIFEST = "manifest.json"
FORMAT = "nodetape-tape"

# Clock pairs kept in a manifest. A pair is stored only when the wall clock moved
# against CLOCK_BOOTTIME (an NTP step or a long slew), so a handful is normal;
# views turn them into a CASE expression, which must stay short to stay fast.
MAX_CLOCK_PAIRS = 64
# A change of realtime - boottime smaller than this is not worth a pair: it is
# below the microsecond precision of `ts` times a thousand, and NTP slews ~50 ppm.
CLOCK_STEP_NS = 1_000_000


def new_manifest(*, host: dict, clock_pair: tuple[int, int], cgroup: dict, options: dict, schema_version: str) -> dict:
    boot_ns, real_ns = clock_pair
    return {
        "format": FORMAT,
        "nodetape_version": __version__,
        "schema_version": schema_version,
        "host": host,
        "clock": {
            "boottime_ns": boot_ns,
            "realtime_ns": real_ns,
            "offset_ns": real_ns - boot_ns,
            "snapshots": [[boot_ns, real_ns]],
        },
        "cgroup": cgroup,
        "options": options,
        "start_ns": boot_ns,
        "end_ns": None,
        "closed": False,
        "sources": {},
        "tables": {},
    }


def add_clock_pair(manifest: dict, pair: tuple[int, int], *, keep_from_ns: int | None = None) -> bool:
    """Store (boottime, realtime) if the wall clock moved against boottime; True if stored.

    The list stays bounded: pairs older than `keep_from_ns` (the retention
    window) go, except the last one before it, which still dates the window's
    first rows; past MAX_CLOCK_PAIRS, the pair that changed the offset least goes.
    """
    snaps = manifest["clock"].setdefault("snapshots", [])
    boot, real = pair
    stored = False
    if not snaps or abs((real - boot) - (snaps[-1][1] - snaps[-1][0])) >= CLOCK_STEP_NS:
        snaps.append([boot, real])
        stored = True
    if keep_from_ns is not None:
        while len(snaps) > 1 and snaps[1][0] <= keep_from_ns:
            snaps.pop(0)
    while len(snaps) > MAX_CLOCK_PAIRS:
        offs = [r - b for b, r in snaps]
        # never the first (dates the start) nor the last (the offset in effect now)
        i = min(range(1, len(snaps) - 1), key=lambda k: abs(offs[k] - offs[k - 1]))
        snaps.pop(i)
    return stored




def _bad(path: Path, field: str) -> TapeError:
    return TapeError(f"{path}: manifest field {field!r} is missing or malformed", str(path))


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check(data: dict, path: Path) -> None:
    """Type-check every field readers use; TapeError naming the first bad one."""
    for key, typ in (("schema_version", str), ("clock", dict), ("tables", dict), ("sources", dict)):
        if not isinstance(data.get(key), typ):
            raise _bad(path, key)
    clock = data["clock"]
    if not _is_int(clock.get("offset_ns")):
        raise _bad(path, "clock.offset_ns")
    snaps = clock.get("snapshots")
    if snaps is not None:
        if not isinstance(snaps, list) or not all(
                isinstance(p, list) and len(p) == 2 and _is_int(p[0]) and _is_int(p[1]) for p in snaps):
            raise _bad(path, "clock.snapshots")
    for key in ("start_ns", "end_ns", "last_flush_ns"):
        if data.get(key) is not None and not _is_int(data[key]):
            raise _bad(path, key)
    for key in ("host", "cgroup", "options"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise _bad(path, key)
    if data.get("closed") is not None and not isinstance(data["closed"], bool):
        raise _bad(path, "closed")
    for name, st in data["sources"].items():
        if not isinstance(st, dict):
            raise _bad(path, f"sources.{name}")
        for k in ("events", "dropped"):
            if st.get(k) is not None and not _is_int(st[k]):
                raise _bad(path, f"sources.{name}.{k}")
        for k in ("status", "reason", "drop_reason", "needs"):
            if st.get(k) is not None and not isinstance(st[k], str):
                raise _bad(path, f"sources.{name}.{k}")
    for key in ("retention", "disk_full", "snapshot", "writer", "recorder"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise _bad(path, key)
    for k, v in (data.get("retention") or {}).items():
        if v is not None and not _is_int(v):
            raise _bad(path, f"retention.{k}")
    for k in ("action", "reason"):
        if (data.get("disk_full") or {}).get(k) is not None and not isinstance(data["disk_full"][k], str):
            raise _bad(path, f"disk_full.{k}")
    for k in ("of", "reason"):
        if (data.get("snapshot") or {}).get(k) is not None and not isinstance(data["snapshot"][k], str):
            raise _bad(path, f"snapshot.{k}")
    dropped = (data.get("writer") or {}).get("dropped")
    if dropped is not None and not (isinstance(dropped, dict) and all(
            isinstance(d, dict) and all(_is_int(n) for n in d.values()) for d in dropped.values())):
        raise _bad(path, "writer.dropped")
    snaps_taken = data.get("snapshots")
    if snaps_taken is not None and not (isinstance(snaps_taken, list) and all(isinstance(x, dict) for x in snaps_taken)):
        raise _bad(path, "snapshots")
    for key in ("stop_reason", "nodetape_version"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise _bad(path, key)
    for name, t in data["tables"].items():
        if not isinstance(t, dict):
            raise _bad(path, f"tables.{name}")
        for k in ("rows", "bytes", "first_part", "dropped"):
            if t.get(k) is not None and not _is_int(t[k]):
                raise _bad(path, f"tables.{name}.{k}")
        parts = t.get("parts")
        if parts is not None and not (isinstance(parts, list) and all(isinstance(p, str) for p in parts)):
            raise _bad(path, f"tables.{name}.parts")


def read_manifest(tape: Path) -> dict:
    path = tape / MANIFEST
    if not tape.exists():
        raise TapeError(f"{tape}: no such tape", str(tape))
    if not tape.is_dir():
        raise TapeError(f"{tape}: not a tape folder", str(tape))
    try:
        text = path.read_text()
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
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise TapeError(f"{path}: not a nodetape manifest", str(path))
    _check(data, path)
    return data
