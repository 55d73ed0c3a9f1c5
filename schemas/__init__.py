"""Table schemas of a tape: the single source of truth for columns, units and meanings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from .tables import BOOTTIME_NS, TABLES, Column, Table

# Major bumps when an existing column changes meaning or type (readers refuse a
# newer major); minor bumps when columns or tables are added. Log every change
# in CHANGES.md.
SCHEMA_VERSION = "1.1"
SCHEMA_MAJOR = int(SCHEMA_VERSION.split(".")[0])

TABLE_NAMES: tuple[str, ...] = tuple(t.name for t in TABLES)
_BY_NAME: dict[str, Table] = {t.name: t for t in TABLES}


def table(name: str) -> Table:
    """The declared table `name`; KeyError names the known tables."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r} (tables: {', '.join(TABLE_NAMES)})") from None


def schema(name: str) -> pa.Schema:
    return table(name).schema


# seq's in-batch order for batches of up to this many rows: a slice of one array (zero-copy),
# not an array built from range() for each batch (10 us for a few rows; every poll with rows makes one)
_SEQ_ROWS = 4096
_SEQ: list[pa.Array] = []


def _in_batch_order(length: int) -> pa.Array:
    if length > _SEQ_ROWS:
        return pa.array(range(length), type=pa.int64())
    if not _SEQ:
        _SEQ.append(pa.array(range(_SEQ_ROWS), type=pa.int64()))
    return _SEQ[0].slice(0, length)


def _spelled_out(v: Any) -> Any:
    if isinstance(v, str):
        return v.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return v


def _to_array(values: Any, col: Column, length: int) -> pa.Array:
    if values is None:
        if not col.nullable:
            raise ValueError(f"column {col.name} is not nullable and was not given")
        return pa.nulls(length, type=col.type)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        arr = values
    else:
        # numpy arrays and lists alike; strings straight to a dictionary column (the same array as
        # string + cast, at a quarter of the cost: every source's batch has some)
        try:
            try:
                arr = pa.array(values, type=col.type)
            except (pa.ArrowNotImplementedError, pa.ArrowTypeError):  # a numpy str array: string first
                arr = pa.array(values, type=col.type.value_type if pa.types.is_dictionary(col.type) else col.type)
        except UnicodeEncodeError:
            # a name that is not UTF-8 (a cgroup made with raw bytes), decoded with surrogateescape
            # to stay openable: stored with its bad bytes spelled out (\xff), not lost with its row
            arr = pa.array([_spelled_out(v) for v in values], type=col.type)
    if arr.type != col.type:
        arr = arr.cast(col.type)
    return arr


def column_array(name: str, column: str, values: Any) -> pa.Array:
    """One column of table `name` as the Arrow array batch() would make of `values`."""
    col = next(c for c in table(name).columns if c.name == column)
    return _to_array(values, col, len(values))


def batch(name: str, columns: Mapping[str, Any]) -> pa.RecordBatch:
    """Build a RecordBatch of table `name` from column values.

    Values may be lists, numpy arrays or Arrow arrays; missing nullable columns
    are NULL; `seq`, when omitted, is the in-batch order (the writer renumbers
    it per table); unknown column names are an error (a typo would otherwise vanish).
    """
    t = table(name)
    unknown = set(columns) - set(t.column_names)
    if unknown:
        raise KeyError(f"{name}: unknown columns {sorted(unknown)}")
    length = None
    for v in columns.values():
        if v is not None:
            length = len(v)
            break
    if length is None:
        length = 0
    cols = dict(columns)
    if "seq" in t.column_names and cols.get("seq") is None:
        # in-batch order; the tape writer renumbers seq across the whole table
        cols["seq"] = _in_batch_order(length)
    arrays = [_to_array(cols.get(c.name), c, length) for c in t.columns]
    return pa.RecordBatch.from_arrays(arrays, schema=t.schema)


def conform(name: str, data: pa.Table | pa.RecordBatch) -> pa.Table | pa.RecordBatch:
    """`data` (a Table or RecordBatch of table `name`) with exactly the declared schema.

    Columns in declared order and types (cast where a part stored another
    encoding, e.g. plain strings for a dictionary column); declared columns the
    data lacks (a tape written by an older nodetape) are NULL; other columns are
    dropped. Data already in the declared schema is returned as is. The one place
    that makes rows match their schema: replay's merge and slices use it, and so
    can a writer.
    """
    sch = table(name).schema
    if data.schema.names == sch.names and data.schema.types == sch.types:
        return data
    n = data.num_rows
    have = set(data.schema.names)
    arrays = []
    for f in sch:
        if f.name in have:
            a = data.column(f.name)
            arrays.append(a if a.type == f.type else a.cast(f.type))
        else:
            arrays.append(pa.nulls(n, type=f.type))
    if isinstance(data, pa.RecordBatch):
        return pa.RecordBatch.from_arrays(arrays, schema=sch)
    return pa.Table.from_arrays(arrays, schema=sch)


__all__ = [
    "BOOTTIME_NS",
    "SCHEMA_MAJOR",
    "SCHEMA_VERSION",
    "TABLES",
    "TABLE_NAMES",
    "Column",
    "Table",
    "batch",
    "conform",
    "schema",
    "table",
]
