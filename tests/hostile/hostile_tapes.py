"""Crafting hostile tapes from real ones: each helper damages a copy the way an attacker (or a bad disk) would.

Parquet footers are Thrift compact structs; the two helpers that make a footer lie
patch its bytes directly (pyarrow never writes a lying footer) and check with
pyarrow that the lie took.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures" / "tapes"


def copy_fixture(tmp_path: Path, name: str = "runc-birth-no-ebpf") -> Path:
    dst = tmp_path / name
    shutil.copytree(FIXTURES / name, dst)
    return dst


def edit_manifest(tape: Path, edit) -> None:
    mf = tape / "manifest.json"
    m = json.loads(mf.read_text())
    edit(m)
    mf.write_text(json.dumps(m))


def first_part(tape: Path, table: str) -> Path:
    return sorted((tape / table).glob("part-*.parquet"))[0]


def _split(path: Path) -> tuple[bytes, bytes]:
    """(everything before the footer, the footer's Thrift bytes)."""
    b = path.read_bytes()
    n = struct.unpack("<I", b[-8:-4])[0]
    return b[: len(b) - 8 - n], b[len(b) - 8 - n: -8]


def rewrite(path: Path, data: bytes) -> None:
    """New bytes under the same name, never through the old inode (a snapshot's part is a hard link)."""
    path.unlink()
    path.write_bytes(data)


def _join(path: Path, body: bytes, footer: bytes) -> None:
    rewrite(path, body + footer + struct.pack("<I", len(footer)) + b"PAR1")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        if n < 0x80:
            out.append(n)
            return bytes(out)
        out.append((n & 0x7F) | 0x80)
        n >>= 7


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 63)


def lie_about_rows(part: Path, rows: int) -> None:
    """The footer claims `rows` rows (file, row group and column chunk counts: i64 field 3 or 5 after its
    predecessor, Thrift header 0x16)."""
    real = pq.read_metadata(part).num_rows
    body, footer = _split(part)
    old, new = b"\x16" + _varint(_zigzag(real)), b"\x16" + _varint(_zigzag(rows))
    assert old in footer
    _join(part, body, footer.replace(old, new))
    assert pq.read_metadata(part).num_rows == rows


def lie_about_max(part: Path, column: str) -> tuple[int, int]:
    """The footer's statistics say the column's max is its min; returns the real (min, max)."""
    meta = pq.read_metadata(part)
    i = meta.schema.to_arrow_schema().get_field_index(column)
    st = meta.row_group(0).column(i).statistics
    lo, hi = st.min, st.max
    assert lo != hi
    body, footer = _split(part)
    old, new = struct.pack("<q", hi), struct.pack("<q", lo)
    assert old in footer
    _join(part, body, footer.replace(old, new))
    assert pq.read_metadata(part).row_group(0).column(i).statistics.max == lo
    return lo, hi


def null_in(part: Path, column: str) -> None:
    """Rewrite the part with one NULL in `column` (its field made nullable, as a foreign writer would)."""
    t = pq.read_table(part)
    i = t.schema.get_field_index(column)
    col = t.column(i).to_pylist()
    col[0] = None
    field = t.schema.field(i).with_nullable(True)
    t = t.set_column(i, field, pa.array(col, type=field.type))
    part.unlink()
    pq.write_table(t, part)


def flip_byte(part: Path, at: int | None = None) -> None:
    b = bytearray(part.read_bytes())
    i = len(b) // 2 if at is None else at
    b[i] ^= 0xFF
    rewrite(part, bytes(b))


def tree(path: Path) -> dict[str, tuple[int, int]]:
    """Names, sizes and mtimes beneath `path`: proof that nothing there changed."""
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(path.rglob("*"))}
