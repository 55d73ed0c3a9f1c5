"""Where things live in a fleet store: pure functions, no I/O.

    STORE/<table>/host=<host>/date=<YYYY-MM-DD>/<tape-id>-<part>.parquet
    STORE/_tapes/host=<host>/<tape-id>.json

Host names and tape ids come from tapes, which are untrusted: both must be plain
names (letters, digits, '.', '_', '-'; not starting with '.' or '-'), so a tape
can never name a path outside its own partition. A tape without an id gets one
derived from what identifies a recording: host, boot id and start time; a
snapshot of a tape shares its id, so its parts land on the very same files.

The date partition is the UTC date of the part's first row, converted to wall
time with the tape's clock pairs (the nearest preceding pair, as the reader does).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re

from nodetape.core.errors import UserError
from nodetape.tape import clockmap

TAPES_DIR = "_tapes"
PART_SUFFIX = ".parquet"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_PART_FILE = re.compile(r"(?P<tape>[A-Za-z0-9_][A-Za-z0-9._-]{0,127})-(?P<index>\d{6,})\.parquet")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def check_name(kind: str, name: object) -> str:
    """`name` if it is a plain name usable as a path component; UserError naming it otherwise."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise UserError(f"{kind} {name!r}: not a plain name (letters, digits, '.', '_', '-'; at most 128)")
    return name


def derive_tape_id(hostname: str, boot_id: str, start_ns: int) -> str:
    """A stable id for a recording: the same host, boot and start always give the same id."""
    h = hashlib.blake2b(f"{hostname}\0{boot_id}\0{start_ns}".encode(), digest_size=8).hexdigest()
    return f"t{h}"


def tape_id_of(manifest: dict) -> str:
    """The manifest's own `tape_id` if it has one, else the derived id."""
    given = manifest.get("tape_id")
    if given is not None:
        return check_name("tape id", given)
    host = manifest.get("host") or {}
    return derive_tape_id(str(host.get("hostname")), str(host.get("boot_id")), int(manifest.get("start_ns") or 0))


def host_of(manifest: dict) -> str:
    host = (manifest.get("host") or {}).get("hostname")
    return check_name("host", host)


def clock_pairs_of(manifest) -> list[tuple[int, int]]:
    """(boottime_ns, offset_ns) sorted by boottime; at least one (as reader.Tape.clock_pairs)."""
    return clockmap.clock_pairs(manifest["clock"])


def wall_date(boot_ns: int, clock_pairs: list[tuple[int, int]]) -> str:
    """UTC date (YYYY-MM-DD) of a CLOCK_BOOTTIME instant."""
    wall = clockmap.boot_to_wall(boot_ns, clock_pairs)
    try:
        return dt.datetime.fromtimestamp(wall / 1e9, dt.timezone.utc).strftime("%Y-%m-%d")
    except (OverflowError, OSError, ValueError):
        raise UserError(f"boottime {boot_ns}: wall time out of range (bad clock pairs?)") from None


def part_file_name(tape_id: str, index: int) -> str:
    return f"{tape_id}-{index:06d}{PART_SUFFIX}"


def parse_part_file(name: str) -> tuple[str, int] | None:
    """`<tape-id>-000012.parquet` -> (tape id, 12); None for anything else (temp files included)."""
    m = _PART_FILE.fullmatch(name)
    return (m.group("tape"), int(m.group("index"))) if m else None


def part_path(table: str, host: str, date: str, tape_id: str, index: int) -> str:
    """Path of a part relative to the store root."""
    if not _DATE.fullmatch(date):
        raise UserError(f"date {date!r}: not YYYY-MM-DD")
    return f"{check_name('table', table)}/host={check_name('host', host)}/date={date}/{part_file_name(tape_id, index)}"


def manifest_path(host: str, tape_id: str) -> str:
    return f"{TAPES_DIR}/host={check_name('host', host)}/{check_name('tape id', tape_id)}.json"


def partition_value(component: str, key: str) -> str | None:
    """`host=node-1` -> 'node-1' for key 'host'; None if the component is not that partition."""
    prefix = key + "="
    if not component.startswith(prefix):
        return None
    value = component[len(prefix):]
    if key == "date":
        return value if _DATE.fullmatch(value) else None
    return value if _NAME.fullmatch(value) and ".." not in value else None
