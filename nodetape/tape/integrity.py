"""Is a part what the manifest says it is? The cheap checks every reader runs on open.

On opening a CLOSED tape, every table's parts on disk must be exactly the parts
its manifest names (from `first_part` on): a part missing, or one the manifest
never named, is damage. A part whose manifest entry carries a size (format 2)
must have that size, and its footer must hold the recorded row count. On every
tape, live or closed, a footer claiming more rows than the file can hold is
damage: it would make a reader allocate gigabytes for a few bytes of file.

What this does not do on open: read the part's bytes. A same-size alteration
is caught by `nodetape verify` (the BLAKE2b checksum, nulls, statistics); see
docs/security.md for the trade-off.

A live tape (not closed) keeps the rules of a tape being written: the folder
is trusted over the manifest (a part renamed just before a SIGKILL is complete
though unnamed), and parts retention unlinks meanwhile are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nodetape.tape.format import Manifest
from nodetape.tape.retention import part_index

# An honest part holds far fewer rows per byte: the densest a nodetape table
# encodes (every column constant, seq +1 per row, zstd) is 65 rows per byte, and
# a page holds at most 20,000 rows behind a header of tens of bytes.
MAX_ROWS_PER_BYTE = 1024


@dataclass(frozen=True)
class Damage:
    """One damaged part (or table) of a tape, and why."""

    path: Path
    why: str

    def line(self) -> str:
        return f"{self.path}: {self.why}"


def implausible_rows(rows: int, size: int) -> bool:
    return rows > MAX_ROWS_PER_BYTE * max(size, 1)


def check_listing(manifest: Manifest, folder: Path, table: str, on_disk: list[Path]) -> list[Damage]:
    """A closed tape's parts on disk against its manifest: missing and unnamed parts."""
    entry = manifest.tables.get(table)
    named = set(entry.parts) if entry else set()
    first = (entry.first_part or 0) if entry else 0
    named = {n for n in named if (part_index(n) or 0) >= first}
    present = {p.name for p in on_disk}
    damage = [Damage(folder / n, "part named by the manifest is missing") for n in sorted(named - present)]
    damage += [Damage(folder / n, "part not named by the manifest of this closed tape")
               for n in sorted(present - named)]
    return damage


def check_size(manifest: Manifest, part: Path, table: str) -> Damage | None:
    """A closed tape's part against the size the manifest recorded (format 2), before its footer is parsed."""
    entry = manifest.tables.get(table)
    s = entry.sums.get(part.name) if entry else None
    if s is None or not manifest.closed:
        return None
    try:
        size = part.stat().st_size
    except OSError:
        return None  # reported when the part is opened
    if size != s.bytes:
        return Damage(part, f"truncated or altered: {size} bytes, the manifest recorded {s.bytes}")
    return None


def check_part(manifest: Manifest, part: Path, table: str, footer_rows: int, size: int) -> Damage | None:
    """Footer rows of one part against its own size and the manifest's count (format 2)."""
    if implausible_rows(footer_rows, size):
        return Damage(part, f"footer claims {footer_rows} rows, more than {size} bytes can hold")
    entry = manifest.tables.get(table)
    s = entry.sums.get(part.name) if entry else None
    if s is None or not manifest.closed:
        return None
    if footer_rows != s.rows:
        return Damage(part, f"footer claims {footer_rows} rows, the manifest recorded {s.rows}")
    return None


def check_rows(manifest: Manifest, folder: Path, table: str, footer_rows: int) -> Damage | None:
    """A closed tape's table: its parts' rows against the manifest's count (tapes without checksums too)."""
    entry = manifest.tables.get(table)
    if not manifest.closed or entry is None or entry.rows == footer_rows:
        return None
    return Damage(folder, f"parts hold {footer_rows} rows, the manifest recorded {entry.rows}")
