"""Which parts a tape keeps: its live parts per table, and their retirement.

Retiring a part is two steps, in this order (see writer.py for why readers
are safe): the manifest stops naming it (its table's `first_part` moves past it),
and the file is unlinked a grace period later, so a reader that listed it a
moment before can still read it. Parts are retired oldest first: by age against
the window (`retain_ns`, the newest row of a part against the rows' clock), by
size (`max_bytes`, over all tables), or early, when the disk is full and the
tape is a flight recorder.

The ledger changes the manifest in memory (through its methods); the writer writes it to disk.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from nodetape.tape.fields import PART_RE
from nodetape.tape.format import Manifest


def part_name(index: int, last: int | None = None) -> str:
    """`part-000012.parquet`; with `last`, a compacted part `part-000012-000020.parquet`."""
    if last is None or last == index:
        return f"part-{index:06d}.parquet"
    return f"part-{index:06d}-{last:06d}.parquet"


def part_range(name: str) -> tuple[int, int] | None:
    """`part-000012.parquet` -> (12, 12); `part-000012-000020.parquet` -> (12, 20); None for anything else."""
    m = PART_RE.fullmatch(name)
    if m is None:
        return None
    first = int(m.group(1))
    last = int(m.group(2)) if m.group(2) is not None else first
    return (first, last) if last >= first and (m.group(2) is None or last > first) else None


def part_index(name: str) -> int | None:
    """The first flush index a part holds: `part-000012.parquet` and `part-000012-000020.parquet` -> 12."""
    r = part_range(name)
    return r[0] if r else None


def visible_parts(names, first_part: int = 0) -> list[str]:
    """The parts a folder listing shows, in order: part names from `first_part` on (retired ones
    excluded), and where ranges nest, only the outermost (a compacted part supersedes its inputs,
    which may wait on disk for their unlink, or outlive a SIGKILL between the compacted part's
    rename and the manifest rewrite). Ranges that overlap without nesting are never written; of
    those the earlier-starting wins, so no row is ever counted twice."""
    ranges = sorted(((r[0], -r[1], n) for n in names if (r := part_range(n)) is not None and r[0] >= first_part))
    out, reach = [], -1
    for first, neg_last, n in ranges:
        if first > reach:
            out.append(n)
            reach = -neg_last
    return out


@dataclass
class PartInfo:
    table: str
    index: int
    rows: int
    bytes: int
    max_ns: int | None  # newest value of the table's time column
    written_ns: int     # boottime when written
    blake2b: str | None = None  # checksum of the file's bytes (format 2)
    last: int | None = None  # a compacted part: the last flush index it holds (format 3)

    @property
    def end(self) -> int:
        return self.index if self.last is None else self.last

    @cached_property
    def name(self) -> str:
        # kept: every flush's merge planning names every live part (compact.py), and a part's
        # range never changes
        return part_name(self.index, self.last)

    @property
    def age_key(self) -> int:
        return self.max_ns if self.max_ns is not None else self.written_ns


class PartLedger:
    def __init__(self, path: Path, manifest: Manifest, *, retain_ns: int | None, max_bytes: int | None,
                 grace_ns: int, clock: Callable[[], int], boot_clock: Callable[[], int]):
        self.path = path
        self.manifest = manifest
        self.retain_ns = retain_ns
        self.max_bytes = max_bytes
        self.grace_ns = grace_ns
        self._clock = clock  # monotonic: grace periods
        self._boot_clock = boot_clock  # the rows' clock: the window
        self.parts: dict[str, list[PartInfo]] = {}
        self.pending: list[tuple[int, Path, int]] = []  # (unlink at monotonic ns, file, bytes)
        if retain_ns or max_bytes:
            manifest.set_bounds(retain_ns, max_bytes)

    @property
    def bounded(self) -> bool:
        """A flight recorder: old parts may go (by age or size)."""
        return bool(self.retain_ns or self.max_bytes)

    def add(self, info: PartInfo) -> None:
        self.parts.setdefault(info.table, []).append(info)
        self.manifest.add_part(info.table, info.name, info.rows, info.bytes, info.blake2b)

    @property
    def tape_bytes(self) -> int:
        """Bytes of parts on disk: live ones and retired ones still in their grace period."""
        return sum(p.bytes for ps in self.parts.values() for p in ps) + sum(b for _, _, b in self.pending)

    @property
    def live_bytes(self) -> int:
        return sum(p.bytes for ps in self.parts.values() for p in ps)

    def live_parts(self) -> dict[str, list[Path]]:
        return {t: [self.path / t / p.name for p in ps] for t, ps in self.parts.items() if ps}

    def oldest(self) -> PartInfo | None:
        heads = [ps[0] for ps in self.parts.values() if ps]
        return min(heads, key=lambda p: p.age_key) if heads else None

    def retire(self, p: PartInfo, grace_ns: int | None = None) -> None:
        self.parts[p.table].remove(p)
        self.manifest.retire_part(p.table, p.name, p.end, p.rows, p.bytes)
        grace = self.grace_ns if grace_ns is None else grace_ns
        self.pending.append((self._clock() + grace, self.path / p.table / p.name, p.bytes))

    def replace(self, inputs: list[PartInfo], output: PartInfo) -> None:
        """A compacted part takes the place of its inputs (compact.py): the manifest names it
        instead of them, and their files go a grace period later, like retired parts."""
        ps = self.parts[output.table]
        at = ps.index(inputs[0])
        ps[at:at + len(inputs)] = [output]
        self.manifest.replace_parts(output.table, [p.name for p in inputs], sum(p.bytes for p in inputs),
                                    output.name, output.bytes, output.rows, output.blake2b)
        until = self._clock() + self.grace_ns
        self.pending += [(until, self.path / p.table / p.name, p.bytes) for p in inputs]

    def enforce(self, now_boot_ns: int | None = None) -> int:
        """Retire parts outside the window or over the size bound; returns how many."""
        n = 0
        if self.retain_ns:
            cutoff = (now_boot_ns if now_boot_ns is not None else self._boot_clock()) - self.retain_ns
            for ps in self.parts.values():
                # parts of a table are in time order: retire the old prefix
                while ps and ps[0].age_key < cutoff:
                    self.retire(ps[0])
                    n += 1
        if self.max_bytes:
            if self.tape_bytes > self.max_bytes:
                # files the manifest no longer names go first (compaction leaves its inputs here)
                self.unlink_pending(force=True)
            # live bytes: retiring moves a part to pending, which tape_bytes still counts
            while self.live_bytes > self.max_bytes and (p := self.oldest()) is not None:
                self.retire(p)
                n += 1
            if self.tape_bytes > self.max_bytes:
                self.unlink_pending(force=True)  # the bound beats the grace period
        return n

    def evict(self, need_bytes: int) -> int:
        """Retire the oldest parts at once until about `need_bytes` are freed; returns how many."""
        freed = n = 0
        while freed < need_bytes and (p := self.oldest()) is not None:
            self.retire(p, 0)
            freed += p.bytes
            n += 1
        return n

    def unlink_pending(self, force: bool = False) -> int:
        """Unlink retired parts whose grace period is over (all of them when forced); returns bytes freed."""
        now = self._clock()
        keep, freed = [], 0
        for item in self.pending:
            deadline, f, nbytes = item
            if force or now >= deadline:
                try:
                    f.unlink()
                except FileNotFoundError:
                    pass
                except OSError:
                    keep.append(item)
                    continue
                freed += nbytes
            else:
                keep.append(item)
        self.pending = keep
        return freed

    def finish(self, wait_ns: int) -> None:
        """Unlink retired parts, waiting up to `wait_ns` for their grace periods.

        What is still in its grace period after that stays on disk: the manifest's
        `first_part` already excludes it, so readers ignore it.
        """
        until = time.monotonic_ns() + wait_ns
        self.unlink_pending()
        while self.pending and time.monotonic_ns() < until:
            time.sleep(0.05)
            self.unlink_pending()
