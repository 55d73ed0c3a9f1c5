"""`nodetape verify TAPE...`: read every byte of every part and check it against the manifest.

Per part: present (a closed tape holds exactly the parts its manifest names),
the recorded size and BLAKE2b checksum (format 2; a part the manifest has no
checksum for is "unverified", not damaged: tapes before format 2 have none),
a footer that parses, a schema of the declared table, a row count that matches
the manifest and that the file size can hold, then the data itself, one row
group at a time (memory stays one row group): no NULL in a non-null column,
each row group's row count, and the footer's min/max statistics of every time
column equal to the data's (lying statistics make `--from/--to` and `WHERE ts_ns`
skip real rows). Per table: the parts' rows against the manifest's count.

What it proves, and what not: docs/security.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nodetape.core.errors import TapeError
from nodetape.schemas import TABLES, Table
from nodetape.tape.format import Manifest, read_manifest
from nodetape.tape.integrity import check_listing, check_rows, implausible_rows
from nodetape.tape.partfile import blake2b_file


@dataclass
class PartResult:
    path: Path
    rows: int = 0
    checksum: str = "none"  # "ok", "none" (manifest has none: unverified), "bad"
    problems: list[str] = field(default_factory=list)


@dataclass
class TapeResult:
    path: Path
    parts: list[PartResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "PATH: why" lines, parts and tables
    readable: bool = True  # False: the manifest itself did not load

    @property
    def sound(self) -> bool:
        return not self.problems

    @property
    def unverified(self) -> int:
        return sum(1 for p in self.parts if p.checksum == "none" and not p.problems)


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _check_bytes(m: Manifest, t: Table, part: Path, r: PartResult) -> int | None:
    """Size and checksum against the manifest; returns the file size (None if unreadable)."""
    entry = m.tables.get(t.name)
    s = entry.sums.get(part.name) if entry else None
    try:
        size = part.stat().st_size
        if s is not None:
            if size != s.bytes:
                r.problems.append(f"truncated or altered: {size} bytes, the manifest recorded {s.bytes}")
            digest = blake2b_file(part)
            r.checksum = "ok" if digest == s.blake2b else "bad"
            if r.checksum == "bad" and size == s.bytes:
                r.problems.append("checksum mismatch: the bytes were altered")
        return size
    except OSError as e:
        r.problems.append(f"cannot read: {e.strerror}")
        return None


def _check_footer(m: Manifest, t: Table, part: Path, size: int, r: PartResult):
    """The footer: parses, declared schema, plausible and recorded row count; the ParquetFile or None."""
    import pyarrow.parquet as pq

    from nodetape.tape.reader import _validate_part

    try:
        _validate_part(part, t)
        pf = pq.ParquetFile(part)
    except TapeError as e:
        r.problems.append(str(e).removeprefix(f"{part}: "))
        return None
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for damaged files
        r.problems.append(f"corrupt Parquet part ({_first_line(e)})")
        return None
    rows = pf.metadata.num_rows
    entry = m.tables.get(t.name)
    s = entry.sums.get(part.name) if entry else None
    if implausible_rows(rows, size):
        r.problems.append(f"footer claims {rows} rows, more than {size} bytes can hold")
        return None
    if s is not None and rows != s.rows:
        r.problems.append(f"footer claims {rows} rows, the manifest recorded {s.rows}")
    r.rows = rows
    return pf


def _stats(rg_meta, col_index: int):
    st = rg_meta.column(col_index).statistics
    if st is None or not st.has_min_max:
        return None
    return st.min, st.max


def _check_row_group(pf, i: int, t: Table, r: PartResult) -> None:
    import pyarrow.compute as pc

    rg_meta = pf.metadata.row_group(i)
    data = pf.read_row_group(i)
    if data.num_rows != rg_meta.num_rows:
        r.problems.append(f"row group {i}: footer says {rg_meta.num_rows} rows, the data holds {data.num_rows}")
    names = data.column_names
    for c in t.columns:
        if not c.nullable and c.name in names and data.column(c.name).null_count:
            r.problems.append(f"row group {i}: {data.column(c.name).null_count} NULL in non-null column {c.name}")
    for tc in t.time_columns:
        if tc not in names:
            continue
        claimed = _stats(rg_meta, pf.schema_arrow.get_field_index(tc))
        col = data.column(tc)
        if claimed is None or col.null_count == len(col):
            continue
        mm = pc.min_max(col)
        actual = (mm["min"].as_py(), mm["max"].as_py())
        if tuple(claimed) != actual:
            r.problems.append(f"row group {i}: footer statistics of {tc} say {claimed[0]}..{claimed[1]}, "
                              f"the data holds {actual[0]}..{actual[1]}")


def verify_part(m: Manifest, t: Table, part: Path) -> PartResult:
    r = PartResult(part)
    size = _check_bytes(m, t, part, r)
    if size is None:
        return r
    pf = _check_footer(m, t, part, size, r)
    if pf is None:
        return r
    for i in range(pf.metadata.num_row_groups):
        try:
            _check_row_group(pf, i, t, r)
        except Exception as e:  # noqa: BLE001 - damaged pages: ArrowInvalid, OSError, ...
            r.problems.append(f"row group {i}: unreadable data ({_first_line(e)})")
            break
    return r


def verify_tape(path: str | Path) -> TapeResult:
    """Every check above on one tape; a manifest that does not load is its one problem."""
    from nodetape.tape.reader import list_parts

    p = Path(path)
    res = TapeResult(p)
    try:
        m = read_manifest(p)
    except TapeError as e:
        res.problems.append(str(e))
        res.readable = False
        return res
    for t in TABLES:
        entry = m.tables.get(t.name)
        on_disk = list_parts(p, t.name, (entry.first_part or 0) if entry else 0)
        if m.closed:
            res.problems += [d.line() for d in check_listing(m, p / t.name, t.name, on_disk)]
        rows, sound = 0, True
        for part in on_disk:
            r = verify_part(m, t, part)
            if not m.closed and not part.exists():
                continue  # retired by the live recorder meanwhile
            res.parts.append(r)
            res.problems += [f"{part}: {why}" for why in r.problems]
            sound &= not r.problems
            rows += r.rows
        bad = check_rows(m, p / t.name, t.name, rows) if sound else None
        if bad is not None:
            res.problems.append(bad.line())
    return res


def report(results: list[TapeResult]) -> str:
    """The short text report: one line per tape, then one line per problem."""
    lines = []
    for res in results:
        checked = sum(1 for p in res.parts if p.checksum == "ok")
        state = ("sound" if res.sound else "UNREADABLE" if not res.readable
                 else f"DAMAGED ({len(res.problems)} problem{'s' if len(res.problems) > 1 else ''})")
        extra = f", {res.unverified} unverified (no checksum in the manifest)" if res.unverified else ""
        lines.append(f"{res.path}: {state}: {len(res.parts)} parts, {sum(p.rows for p in res.parts)} rows, "
                     f"{checked} checksums match{extra}")
        lines += [f"  {x}" for x in res.problems]
    return "\n".join(lines) + "\n"
