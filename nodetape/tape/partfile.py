"""One Parquet part: how it is encoded, written and checksummed (every tape writer shares this).

Parquet settings, one by one:
- zstd: about 2x smaller than snappy on these tables for similar write cost; but a
  tiny part (at most SNAPPY_ROWS rows: what one flush of an idle node writes per
  table) is snappy: zstd builds a compression context per column chunk, which made
  encoding a 6-row cgroup_samples part 0.82 ms against 0.50 ms, and on a few dozen
  values its frame makes a column chunk bigger than the raw bytes (2,553 B vs
  2,478 B for 6 rows; zstd wins from ~100 rows: 3,714 vs 3,959 B at 108);
- dictionary encoding on strings (paths, kinds, comms repeat on most rows);
- DELTA_BINARY_PACKED on time and sequence columns (monotone, so deltas are tiny);
- never BYTE_STREAM_SPLIT on integer columns: DuckDB cannot read it;
- no per-column metadata in the part's stored Arrow schema (the units and docs
  of schemas/tables.py): every part's footer repeated them, 35-40% of a small
  part (a cgroup_samples part of 14 rows: 9.6 KB -> 5.9 KB); `nodetape schema`
  and docs/schema.md carry them, the table-level metadata stays;
- a small part (at most LEAN_ROWS rows: what one flush of an idle or ordinary node
  writes, soon merged by compaction) has a lean footer: no stored Arrow schema
  (ARROW:schema, ~2 KB of a ~6 KB cgroup_samples part; readers take the Parquet
  schema, where a dictionary column reads back as a plain string, which the
  reader's type check and compaction accept) and min/max statistics only on time
  columns, `seq` and non-null columns (what time pruning, verify and the reader's
  footer NULL check use), and no dictionary pages (at a few dozen rows a string
  column's dictionary page costs more than it saves: -7% on a 14-row part) except
  on the dictionary-typed columns of a flush's tiny part whose dictionaries are no
  longer than its rows (writing them dense costs a Cast per column, 13 us each;
  merges stay dense); big parts (compacted ones, bench and slice tapes) keep all three,
  with each dictionary cut to the values the part uses (`tight_dictionaries`: Arrow's
  writer copies an Arrow dictionary into the part whole, so rows sliced out of a
  bigger table carried all of its values: a 19,667-row cgroup_samples part of the
  100M-row bench tape held 73,520 paths for the 527 it used, 9.5 MB before zstd, and
  every reader decoded them).

The checksum is BLAKE2b (hashlib, 32-byte digest) of the file's bytes, computed on
the encoded buffer before it is written, so it costs no extra read.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from nodetape.tape.fs import write_file  # noqa: F401 - the tape writers' part write, imported from here

DIGEST_SIZE = 32


# a part of at most this many rows is written lean (module doc)
LEAN_ROWS = 4096
# a part of at most this many rows is snappy, not zstd (module doc)
SNAPPY_ROWS = 64


def parquet_options(schema: pa.Schema, lean: bool = False, rows: int | None = None, fresh: bool = False) -> dict:
    """The writer's settings for a part of `schema`; `rows` (the part's) picks the codec; `fresh`:
    a flush's part, not a merge (its tiny dictionary columns keep their pages, module doc)."""
    tiny = rows is not None and rows <= SNAPPY_ROWS
    fresh = fresh and lean and tiny
    opts = by_identity(_OPTIONS, schema, (lean, tiny, fresh), lambda: _options(schema, lean, tiny, fresh))
    return {**opts, "column_encoding": dict(opts["column_encoding"])}


def by_identity(cache: dict, obj, key, build):
    """`build()`, cached by the identity of `obj` (and `key`). Hashing a pa.Schema walks every
    field and its metadata (27 us for cgroup_samples' 18 columns), which an lru_cache did at
    every part; a table's schema is one object (schemas/tables.py), so its id finds it. The
    entry keeps `obj` alive, so its id cannot be reused while cached."""
    hit = cache.get((id(obj), key))
    if hit is not None and hit[0] is obj:
        return hit[1]
    if len(cache) >= 512:
        cache.clear()  # other schemas (tests, old parts): bounded
    value = build()
    cache[(id(obj), key)] = (obj, value)
    return value


_OPTIONS: dict = {}
_PART_SCHEMAS: dict = {}


def _options(schema: pa.Schema, lean: bool, tiny: bool, fresh: bool = False) -> dict:
    delta_cols = [
        f.name
        for f in schema
        if (f.metadata or {}).get(b"unit") == b"boottime_ns" or f.name == "seq"
    ]
    dict_cols = [f.name for f in schema if pa.types.is_dictionary(f.type) or pa.types.is_string(f.type)]
    opts = {
        "compression": "snappy" if tiny else "zstd",
        "use_dictionary": dict_cols,
        "column_encoding": {c: "DELTA_BINARY_PACKED" for c in delta_cols},
        "write_statistics": True,
    }
    if lean:
        opts["store_schema"] = False
        opts["write_statistics"] = [f.name for f in schema if f.name in delta_cols or not f.nullable]
        # a dictionary page per string column costs more than it saves here; but a flush's tiny part
        # keeps them on its dictionary-typed columns: written as they are, where a dense column is
        # first made by a Cast kernel call per column (13 us each: 0.40 -> 0.33 ms for a
        # cgroup_samples part, +150 B; merged away within a few flushes). Not merges: their
        # inputs come from memory (dictionaries as the sources built them) or from files
        # (dictionaries rebuilt), and only dense columns give the same bytes either way
        opts["use_dictionary"] = [f.name for f in schema if pa.types.is_dictionary(f.type)] if fresh else False
    return opts


def part_schema(schema: pa.Schema) -> pa.Schema:
    """The schema stored in a part: the table's, without per-column metadata (see above)."""
    return by_identity(_PART_SCHEMAS, schema, None,
                       lambda: pa.schema([f.remove_metadata() for f in schema], metadata=schema.metadata))


def encode(table: pa.Table, schema: pa.Schema) -> pa.Buffer:
    """The part's bytes, in memory: the file on disk then comes from one write loop whose
    ENOSPC is a plain OSError, and its size and checksum are known before writing.
    A table already in the part schema (the writer builds it so) is not cast: 50 us a part."""
    sink = pa.BufferOutputStream()
    want = part_schema(schema)
    if not table.schema.equals(want, check_metadata=True):  # == ignores the metadata to drop
        table = table.cast(want)
    n = table.num_rows
    if n > LEAN_ROWS:
        table = tight_dictionaries(table)
    pq.write_table(table, sink, **parquet_options(schema, n <= LEAN_ROWS, n, fresh=_dictionaries_fit(table)))
    return sink.getvalue()


# a dictionary chunk holding more than this many values beyond twice those its rows use is re-encoded
LOOSE_SLACK = 64


def tight_dictionaries(table: pa.Table) -> pa.Table:
    """The table with every dictionary column whose chunks carry values their rows do not use
    (a slice keeps its parent's whole dictionary) re-encoded to the values used, in order of first
    use. Same values, same types. Counting a chunk's distinct indices costs ~20 us per 10,000 rows,
    so only big parts pay it (lean parts have no dictionary pages, module doc)."""
    cols = None
    for i, f in enumerate(table.schema):
        if not pa.types.is_dictionary(f.type):
            continue
        col = table.column(i)
        if not any(_loose(c) for c in col.chunks):
            continue
        cols = cols or list(table.columns)
        dense = col.cast(f.type.value_type).combine_chunks()
        cols[i] = pc.dictionary_encode(dense).cast(f.type)
    return table if cols is None else pa.Table.from_arrays(cols, schema=table.schema)


def _loose(chunk: pa.DictionaryArray) -> bool:
    size = len(chunk.dictionary)
    return size > LOOSE_SLACK and size > 2 * pc.count_distinct(chunk.indices).as_py() + LOOSE_SLACK


def _dictionaries_fit(table: pa.Table) -> bool:
    """Whether no dictionary chunk's dictionary is longer than the chunk. A source builds its
    dictionaries from the values it has, but a column sliced or filtered out of a bigger one (replay
    --out cutting a window from a compacted part) keeps the whole dictionary it was cut from, which a
    dictionary page would copy into the part: a 3-row slice of a 20,000-row part, 104 KB against 1.6 KB."""
    for i, f in enumerate(table.schema):
        if pa.types.is_dictionary(f.type) and any(len(c.dictionary) > len(c) for c in table.column(i).chunks):
            return False
    return True


def column_max(col: pa.ChunkedArray) -> int | None:
    """The largest value of an integer column, None if it has none: numpy's max where the column
    has no NULLs (pc.max's kernel dispatch cost more than the max itself on a flush's few rows;
    one `to_numpy` of the chunked column and one max: 2 us, against 7 us a chunk one by one)."""
    if len(col) == 0:
        return None
    if col.null_count == 0:
        return int(col.to_numpy().max())
    best = None
    for chunk in col.chunks:
        m = pc.max(chunk).as_py() if len(chunk) else None
        if m is not None and (best is None or m > best):
            best = m
    return best


def blake2b_hex(data) -> str:
    return hashlib.blake2b(memoryview(data), digest_size=DIGEST_SIZE).hexdigest()


def blake2b_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.blake2b(digest_size=DIGEST_SIZE)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
