"""The manifest's JSON text, from cached pieces: the writer rewrites it at every flush.

The text is exactly `json.dumps(manifest.to_dict())` (tests/unit/test_manifest_text.py).
Most of it is the sources (their environments) and the tables (a checksum per live
part), and at a flush most of those are unchanged: an idle node's flush touches the
tables it wrote a part to. So each source's and each table's `"name": {...}` piece is
kept with what it was made from, and only a changed one is encoded again; the rest of
the manifest (clock, options, counters: small) is encoded whole each time.
A source piece is reused while the manifest holds the same Source object (set_sources
keeps the object of a source whose JSON did not change, and replaces it otherwise); a
table piece while its rows, bytes, parts, first part, checksums and drops are the same.
"""

from __future__ import annotations

import json


def _table_key(t) -> tuple:
    reasons = tuple(t.drop_reasons.items()) if t.drop_reasons is not None else None
    return (t.rows, t.bytes, t.first_part, t.dropped, reasons, tuple(t.parts), len(t.sums))


class ManifestText:
    """One tape's manifest text, built again at each call from what changed since the last."""

    def __init__(self):
        self._sources: dict[str, tuple[object, str]] = {}  # name -> (the Source, its piece)
        self._tables: dict[str, tuple[tuple, str]] = {}  # name -> (_table_key, its piece)

    def text(self, m) -> str:
        keys = list(m)
        at = keys.index("sources")
        assert keys[at + 1] == "tables"  # format._ALWAYS: the two are neighbours
        head = json.dumps({k: m[k] for k in keys[:at]})
        tail = json.dumps({k: m[k] for k in keys[at + 2:]})
        sources = self._object(m.sources, self._sources, lambda s: s, lambda s: s.to_dict(), by_identity=True)
        tables = self._object(m.tables, self._tables, _table_key, lambda t: t.to_dict(), by_identity=False)
        rest = ", " + tail[1:] if len(tail) > 2 else "}"
        return f'{head[:-1]}, "sources": {sources}, "tables": {tables}{rest}'

    @staticmethod
    def _object(items: dict, cache: dict, key_of, to_dict, *, by_identity: bool) -> str:
        pieces = []
        for name, v in items.items():
            key = key_of(v)
            hit = cache.get(name)
            if hit is None or not (hit[0] is key if by_identity else hit[0] == key):
                hit = cache[name] = (key, f"{json.dumps(name)}: {json.dumps(to_dict(v))}")
            pieces.append(hit[1])
        for name in [n for n in cache if n not in items]:
            del cache[name]
        return "{" + ", ".join(pieces) + "}"
