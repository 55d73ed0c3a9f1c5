"""Which parts a tape keeps: its live parts per table, and their retirement.

Retiring a part is two steps, in this order (see writer.py for why readers
are safe): the manifest stops naming it (its table's `first_part` moves past it),
and the file is unlinked a grace period later, so a reader that listed it a
moment before can still read it. Parts are retired oldest first: by age against
the window (`retain_ns`, the newest row of a part against the rows' clock), by
size (`max_bytes`, over all tables), or early, when the disk is full and the
tape is a flight recorder.

The ledger changes the manifest dict in memory; the writer writes it to disk.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def part_name(index: int) -> str:
    return f"part-{index:06d}.parquet"


def part_index(name: str) -> int | None:
    """`part-000012.parquet` -> 12; None for anything else."""
    if name.startswith("part-") and name.endswith(".parquet"):
        digits = name[5:-8]
        if digits.isdigit():
            return int(digits)
    return None


@dataclass
class PartInfo:
    table: str
    index: int
    rows: int
    bytes: int
    max_ns: int | None  # newest value of the table's time column
    written_ns: int     # boottime when written

    @property
    def name(self) -> str:
        return part_name(self.index)

    @property
    def age_key(self) -> int:
        return self.max_ns if self.max_ns is not None else self.written_ns


class PartLedger:
    def __init__(self, path: Path, manifest: dict, *, retain_ns: int | None, max_bytes: int | None,
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
            manifest["retention"] = {"retain_ns": retain_ns, "max_bytes": max_bytes,
                                     "retired_parts": 0, "retired_rows": 0, "retired_bytes": 0}

    @property
    def bounded(self) -> bool:
        """A flight recorder: old parts may go (by age or size)."""
        return bool(self.retain_ns or self.max_bytes)

    def add(self, info: PartInfo) -> None:
        self.parts.setdefault(info.table, []).append(info)
        m = self.manifest["tables"].setdefault(info.table, {"rows": 0, "bytes": 0, "parts": []})
        m["rows"] += info.rows
        m["bytes"] += info.bytes
        m["parts"].append(info.name)

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
        m = self.manifest["tables"][p.table]
        if p.name in m["parts"]:
            m["parts"].remove(p.name)
        m["rows"] -= p.rows
        m["bytes"] -= p.bytes
        # parts are retired oldest first, so one number says which files on disk are gone
        m["first_part"] = max(m.get("first_part", 0), p.index + 1)
        r = self.manifest.setdefault("retention", {"retired_parts": 0, "retired_rows": 0, "retired_bytes": 0})
        r["retired_parts"] = r.get("retired_parts", 0) + 1
        r["retired_rows"] = r.get("retired_rows", 0) + p.rows
        r["retired_bytes"] = r.get("retired_bytes", 0) + p.bytes
        grace = self.grace_ns if grace_ns is None else grace_ns
        self.pending.append((self._clock() + grace, self.path / p.table / p.name, p.bytes))

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
