"""The tape manifest: what was recorded, where, when, by which sources, and what was lost.

Written at start, rewritten atomically (temp file, fsync, rename) on every flush
and at stop, so a reader always finds a complete JSON document.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from . import __version__
from .errors import TapeError

MANIFEST = "manifest.json"
FORMAT = "nodetape-tape"


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


def atomic_write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
    except OSError as e:
        raise TapeError(f"{path}: cannot read manifest: {e.strerror}", str(path)) from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TapeError(f"{path}: malformed manifest JSON ({e})", str(path)) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise TapeError(f"{path}: not a nodetape manifest", str(path))
    for key, typ in (("schema_version", str), ("clock", dict), ("tables", dict), ("sources", dict)):
        if not isinstance(data.get(key), typ):
            raise TapeError(f"{path}: manifest field {key!r} is missing or malformed", str(path))
    if not isinstance(data["clock"].get("offset_ns"), int):
        raise TapeError(f"{path}: manifest field 'clock.offset_ns' is missing or malformed", str(path))
    return data
