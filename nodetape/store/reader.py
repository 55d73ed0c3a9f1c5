"""Read a fleet store back as tapes: one `reader.Tape` per pushed tape id.

Each tape's parts are the store files of its id (listed, not taken from the manifest:
the files are the truth, as in a tape folder); its manifest is the one pushed beside
them, so `reader.connect()` builds the same views (host column, per-host clock pairs
for `ts`) over a store as over tape folders.

Narrowing: `hosts` is a glob on the host partition; `start_wall_ns`/`end_wall_ns`
skip date partitions outside the window and, using the time range the push recorded
for each part (from the Parquet footer's ts_ns statistics), parts that do not
overlap it. Whole parts are kept: a part that overlaps the window brings all its rows.
Date partitions more than a day before the window are not listed (a part spans one
flush interval, seconds, so its rows never reach a day past its first row's date).

Compacted files (store/compacted.py): each table's per-host parts are listed first, then
each selected date's compaction index is read; parts the index covers are skipped (their
rows are in a compacted file), and the compacted rows of the selected hosts, narrowed by
original part as above, are kept in Selection.compacted for the views.

Files a push is still writing are hidden temporaries and are never listed; parts whose
tape has no manifest yet (a push killed before its manifest) are left out and counted.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from nodetape.core.errors import TapeError, UserError
from nodetape.schemas import SCHEMA_MAJOR, TABLES
from nodetape.store import compacted as cz
from nodetape.store import layout
from nodetape.store.storefs import StoreFS, is_url, open_fs
from nodetape.tape import clockmap
from nodetape.tape.format import Manifest


def is_store(location: str | os.PathLike) -> bool:
    """A store URL (s3://, gs://) or a folder holding a `_tapes` folder."""
    if is_url(location):
        return True
    return (Path(location) / layout.TAPES_DIR).is_dir()


@dataclass
class Selection:
    """What a store narrowed to: the tapes, and what was left out and why."""

    tapes: list = field(default_factory=list)
    orphan_parts: int = 0  # parts without a pushed manifest (a push still running or killed)
    pruned_parts: int = 0  # parts outside the time window
    compacted: dict = field(default_factory=dict)  # table -> [compacted.CompactedFile] with selected rows
    keys: list = field(default_factory=list)  # (host, tape id) of each of `tapes`


def _date(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc).strftime("%Y-%m-%d")


def _day_before(date: str) -> str:
    return (dt.date.fromisoformat(date) - dt.timedelta(days=1)).isoformat()


def _check_manifest(m: object, where: str) -> Manifest:
    """A store tape's manifest through the one typed loader every tape's manifest goes through (store
    manifests are untrusted too); the store's own fields (parts, tape id) stay in its extra fields."""
    manifest = Manifest.from_dict(m, where)
    v = manifest.schema_version
    if not v.split(".")[0].isdigit() or int(v.split(".")[0]) > SCHEMA_MAJOR:
        raise TapeError(f"{where}: tape schema {v} is newer than this nodetape reads ({SCHEMA_MAJOR}.x)", where)
    return manifest


class StoreReader:
    def __init__(self, store: StoreFS, hosts: str | None, start_wall_ns: int | None, end_wall_ns: int | None):
        self.store = store
        self.hosts = hosts
        self.start = start_wall_ns
        self.end = end_wall_ns
        self.lo_date = _day_before(_date(start_wall_ns)) if start_wall_ns is not None else None
        self.hi_date = _date(end_wall_ns) if end_wall_ns is not None else None

    def host_dirs(self, rel: str) -> list[tuple[str, str]]:
        out = []
        for name, is_dir in self.store.list(rel):
            host = layout.partition_value(name, "host")
            if is_dir and host is not None and (self.hosts is None or fnmatch.fnmatchcase(host, self.hosts)):
                out.append((host, f"{rel}/{name}" if rel else name))
        return sorted(out)

    def date_ok(self, date: str) -> bool:
        return (self.lo_date is None or date >= self.lo_date) and (self.hi_date is None or date <= self.hi_date)

    def manifests(self) -> dict[tuple[str, str], dict]:
        out = {}
        for host, rel in self.host_dirs(layout.TAPES_DIR):
            for name, is_dir in self.store.list(rel):
                tid = name[:-5] if name.endswith(".json") and not is_dir else None
                if tid is None or layout.parse_part_file(f"{tid}-000000.parquet") is None:
                    continue
                where = self.store.full(f"{rel}/{name}")
                try:
                    m = json.loads(self.store.read_bytes(f"{rel}/{name}"))
                except (ValueError, OSError) as e:
                    raise TapeError(f"{where}: malformed store manifest ({str(e).splitlines()[0]})", where) from None
                out[(host, tid)] = _check_manifest(m, where)
        return out

    def parts(self, table: str) -> dict[tuple[str, str], list[tuple[int, str]]]:
        """(host, tape id) -> [(index, relative path)] of the table's parts in the selected partitions."""
        out: dict[tuple[str, str], list[tuple[int, str]]] = {}
        for host, hrel in self.host_dirs(table):
            for dname, is_dir in self.store.list(hrel):
                date = layout.partition_value(dname, "date")
                if not is_dir or date is None or not self.date_ok(date):
                    continue
                for fname, fdir in self.store.list(f"{hrel}/{dname}"):
                    parsed = None if fdir else layout.parse_part_file(fname)
                    if parsed:
                        out.setdefault((host, parsed[0]), []).append((parsed[1], f"{hrel}/{dname}/{fname}"))
        return out

    def compacted(self, table: str, manifests: dict, sel: Selection, fetch) -> tuple[list, set]:
        """The table's compacted files in the selected dates, each with its selected sources, and the
        set of per-host part paths their indexes cover (read after the parts were listed: see compacted.py)."""
        files, covered, pairs = [], set(), {}
        for date in cz.compacted_dates(self.store, table):
            if not self.date_ok(date):
                continue
            idx = cz.read_index(self.store, table, date)
            covered.update(idx["parts"])
            by_file: dict[str, cz.CompactedFile] = {}
            for rel, rec in idx["parts"].items():
                f = by_file.setdefault(rec.get("file"), cz.CompactedFile(path=Path()))
                f.total += 1
                key = (rec.get("host"), rec.get("tape"))
                if self.hosts is not None and not fnmatch.fnmatchcase(str(key[0]), self.hosts):
                    continue
                if key not in manifests or not isinstance(rec.get("src"), int):
                    sel.orphan_parts += 1
                    continue
                if key not in pairs:
                    pairs[key] = layout.clock_pairs_of(manifests[key])
                if not self.overlaps(rec, pairs[key]):
                    sel.pruned_parts += 1
                    continue
                f.srcs[rec["src"]] = (key[0], key[1], rel.rsplit("/", 1)[-1])
                f.hosts.add(key[0])
            for entry in idx["files"]:
                f = by_file.get(entry.get("file"))
                if f is not None and f.srcs:
                    f.path = fetch(f"{cz.date_dir(table, date)}/{layout.check_name('compacted file', entry['file'])}")
                    files.append(f)
        return files, covered

    def overlaps(self, record: dict | None, pairs) -> bool:
        if record is None or (self.start is None and self.end is None):
            return True
        lo, hi = record.get("min_ns"), record.get("max_ns")
        if not isinstance(lo, int) or not isinstance(hi, int):
            return True
        wlo, whi = clockmap.boot_to_wall(lo, pairs), clockmap.boot_to_wall(hi, pairs)
        return (self.start is None or whi >= self.start) and (self.end is None or wlo < self.end)


def select(location: str | os.PathLike, hosts: str | None = None, start_wall_ns: int | None = None,
           end_wall_ns: int | None = None, local_dir=None) -> Selection:
    from nodetape.tape.reader import Tape

    store = open_fs(location)
    if store.local and not store.exists_dir(layout.TAPES_DIR):
        raise UserError(f"{location}: not a fleet store (no {layout.TAPES_DIR} folder)")
    r = StoreReader(store, hosts, start_wall_ns, end_wall_ns)
    manifests = r.manifests()
    sel = Selection()
    files: dict[tuple[str, str], dict[str, list[Path]]] = {k: {} for k in manifests}
    fetch = _Fetcher(store, local_dir)
    in_compacted: set = set()
    for t in TABLES:
        loose = r.parts(t.name)  # listed before the index is read (compacted.py)
        sel.compacted[t.name], covered = r.compacted(t.name, manifests, sel, fetch)
        in_compacted.update((h, tid) for f in sel.compacted[t.name] for h, tid, _ in f.srcs.values())
        for key, found in loose.items():
            found = [(i, rel) for i, rel in found if rel not in covered]
            if not found:
                continue
            if key not in manifests:
                sel.orphan_parts += len(found)
                continue
            m = manifests[key]
            records = {rec.get("file"): rec for rec in ((m.get("store") or {}).get("parts") or {}).get(t.name, {}).values()
                       if isinstance(rec, dict)}
            pairs = layout.clock_pairs_of(m)
            keep = []
            for _, rel in sorted(found):
                if r.overlaps(records.get(rel), pairs):
                    keep.append(fetch(rel))
                else:
                    sel.pruned_parts += 1
            files[key][t.name] = keep
    for (host, tid), m in sorted(manifests.items()):
        parts = {t.name: files[(host, tid)].get(t.name, []) for t in TABLES}
        if r.start is not None or r.end is not None or hosts is not None:
            if not any(parts.values()) and (host, tid) not in in_compacted:
                continue  # nothing of this tape in the window
        m.host["hostname"] = host  # the partition is the host label
        sel.tapes.append(Tape(Path(store.full(f"{layout.TAPES_DIR}/host={host}/{tid}")), m, parts))
        sel.keys.append((host, tid))
    return sel


class _Fetcher:
    """Local paths of store files: as they are for a directory store; copied once into a cache for an object store."""

    def __init__(self, store: StoreFS, local_dir):
        self.store = store
        self.cache = None
        if not store.local:
            import hashlib

            base = Path(local_dir or os.environ.get("NODETAPE_STORE_CACHE")
                        or Path.home() / ".cache" / "nodetape" / "store")
            self.cache = base / hashlib.blake2b(store.location.encode(), digest_size=8).hexdigest()

    def __call__(self, rel: str) -> Path:
        if self.cache is None:
            return Path(self.store.local_path(rel))
        dst = self.cache / rel
        size = self.store.size(rel)
        if not dst.exists() or dst.stat().st_size != size:
            dst.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = dst.with_name(f".{dst.name}.{os.getpid()}.partial")
            tmp.write_bytes(self.store.read_bytes(rel))  # parts are immutable: name + size identify them
            os.replace(tmp, dst)
        return dst


def open_store(location: str | os.PathLike, hosts: str | None = None, start_wall_ns: int | None = None,
               end_wall_ns: int | None = None):
    """The store's tapes (reader.Tape, in a StoreTapes list: its .connect() builds single-scan views), narrowed
    by host glob and wall-time window; UserError if none."""
    from nodetape.store.views import StoreTapes

    sel = select(location, hosts, start_wall_ns, end_wall_ns)
    if not sel.tapes:
        what = f" matching --hosts {hosts!r}" if hosts else ""
        raise UserError(f"{location}: no tapes{what} in the store" + (" for that time window"
                        if start_wall_ns is not None or end_wall_ns is not None else ""))
    return StoreTapes(sel.tapes, compacted=sel.compacted, keys=sel.keys, hosts=hosts)


def parse_wall(text: str | None, option: str) -> int | None:
    """An ISO 8601 wall time (UTC when no zone is given) -> ns since the epoch; UserError naming the option."""
    if text is None:
        return None
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"{option} {text!r}: over a store, give an ISO wall time (2026-12-06T10:02:00Z)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    delta = when - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000
