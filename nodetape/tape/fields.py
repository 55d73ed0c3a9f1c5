"""Field checks for the manifest loader: every value a tape gives us is typed and bounded here.

A manifest is untrusted input (DESIGN.md principle 6). Each check returns the
value or raises one TapeError naming the manifest file and the dotted field
(`cgroup.hierarchies.cpu`), so a foreign or hostile manifest never reaches the
code above as a KeyError, a TypeError, a 10^30 nanosecond offset or a path
that climbs out of a folder.
"""

from __future__ import annotations

import posixpath
import re

from nodetape.core.errors import TapeError

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
# CLOCK_BOOTTIME values: nanoseconds since boot.  is 73 years; every bound below keeps boottime + offset inside int64 (and so inside the
# TIMESTAMP range DuckDB and datetime convert), whatever a tape claims.
MAX_BOOT_NS = 2**61
MAX_OFFSET_NS = 2**62
# Wall times (CLOCK_REALTIME) a tape may name: 1970-01-01 to 2262-04-11 (int64 ns).
MAX_REAL_NS = INT64_MAX
MAX_NAME = 255
MAX_PATH = 4096
MAX_TEXT = 65536
# part-NNNNNN.parquet: one flush; part-AAAAAA-BBBBBB.parquet (format 3): a compacted part holding
# exactly the rows of parts AAAAAA..BBBBBB (compact.py), which it supersedes in a folder listing
PART_RE = re.compile(r"part-([0-9]{6,12})(?:-([0-9]{6,12}))?\.parquet")
TABLE_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _has_control(s: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in s)


def plain_name(s) -> bool:
    """A single file or folder name: no separator, no NUL or control character, not `.` or `..`."""
    return (isinstance(s, str) and 0 < len(s) <= MAX_NAME and "/" not in s and s not in (".", "..")
            and not _has_control(s))


def plain_abs_path(s) -> bool:
    """An absolute, already normalised path without `..` components or control characters."""
    return (isinstance(s, str) and 0 < len(s) <= MAX_PATH and s.startswith("/") and not _has_control(s)
            and not s.startswith("//") and posixpath.normpath(s) == s and ".." not in s.split("/"))


class Fields:
    """Checks values of one manifest; errors name `where` (the manifest file) and the field."""

    def __init__(self, where: str):
        self.where = where

    def bad(self, field: str, why: str = "is missing or malformed") -> TapeError:
        return TapeError(f"{self.where}: manifest field {field!r} {why}", self.where)

    def obj(self, v, field: str, optional: bool = False) -> dict | None:
        if v is None and optional:
            return None
        if not isinstance(v, dict):
            raise self.bad(field, "is missing or not an object")
        return v

    def int_(self, v, field: str, lo: int = INT64_MIN, hi: int = INT64_MAX, optional: bool = False) -> int | None:
        if v is None and optional:
            return None
        if not is_int(v):
            raise self.bad(field, "is missing or not an integer")
        if not lo <= v <= hi:
            raise self.bad(field, f"is out of range ({lo}..{hi})")
        return v

    def count(self, v, field: str, optional: bool = True) -> int | None:
        return self.int_(v, field, 0, INT64_MAX, optional)

    def boot_ns(self, v, field: str, optional: bool = True) -> int | None:
        return self.int_(v, field, 0, MAX_BOOT_NS, optional)

    def number(self, v, field: str, optional: bool = True) -> float | int | None:
        if v is None and optional:
            return None
        if not (is_int(v) or isinstance(v, float)) or v != v or abs(v) > 1e300:
            raise self.bad(field, "is not a number")
        return v

    def text(self, v, field: str, optional: bool = True, max_len: int = MAX_TEXT) -> str | None:
        if v is None and optional:
            return None
        if not isinstance(v, str) or len(v) > max_len:
            raise self.bad(field, "is missing or not a string")
        return v

    def boolean(self, v, field: str, optional: bool = True) -> bool | None:
        if v is None and optional:
            return None
        if not isinstance(v, bool):
            raise self.bad(field, "is not true or false")
        return v

    def name(self, v, field: str) -> str:
        if not plain_name(v):
            raise self.bad(field, "is not a plain name")
        return v

    def abs_path(self, v, field: str, optional: bool = True) -> str | None:
        if v is None and optional:
            return None
        if not plain_abs_path(v):
            raise self.bad(field, "is not a plain absolute path")
        return v

    def table(self, v, field: str) -> str:
        if not isinstance(v, str) or not TABLE_RE.fullmatch(v):
            raise self.bad(field, "is not a table name")
        return v

    def part(self, v, field: str) -> str:
        m = PART_RE.fullmatch(v) if isinstance(v, str) else None
        if m is None or (m.group(2) is not None and int(m.group(2)) <= int(m.group(1))):
            raise self.bad(field, "is not a part name (part-NNNNNN.parquet or part-AAAAAA-BBBBBB.parquet, A < B)")
        return v

    def names(self, v, field: str, optional: bool = True) -> list[str] | None:
        if v is None and optional:
            return None
        if not isinstance(v, list):
            raise self.bad(field, "is not a list")
        return [self.text(x, f"{field}[{i}]", optional=False, max_len=MAX_PATH) for i, x in enumerate(v)]

    def str_map(self, v, field: str, value_check) -> dict[str, str]:
        """{plain name: value} with every value checked by `value_check(value, field)`."""
        out = {}
        for k, x in self.obj(v, field).items():
            self.name(k, f"{field} key {k!r}")
            out[k] = value_check(x, f"{field}.{k}")
        return out

    def json(self, v, field: str, depth: int = 0):
        """Free-form JSON kept as is (options, host, environment): bounded depth, no NaN."""
        if depth > 8:
            raise self.bad(field, "nests too deeply")
        if v is None or isinstance(v, (bool, str)) or is_int(v):
            return v
        if isinstance(v, float):
            return self.number(v, field)
        if isinstance(v, (list, tuple)):
            return [self.json(x, f"{field}[{i}]", depth + 1) for i, x in enumerate(v)]
        if isinstance(v, dict):
            return {k: self.json(x, f"{field}.{k}", depth + 1) for k, x in v.items()}
        raise self.bad(field, "is not JSON")
