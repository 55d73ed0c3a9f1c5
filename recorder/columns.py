"""A sampled table's batch, built column-wise with as few Arrow conversions as a poll allows.

A sampled source writes one row per thing (a cgroup, a PSI scope and resource) per interval.
Building its batch from row tuples cost one Arrow conversion per column, and a dictionary
cast per string column, at every poll: on an idle node that was most of a poll's CPU. Here:

- the columns that depend only on which things the rows are (a cgroup's path, id, pod_uid;
  a PSI row's scope and resource) are converted once per set of things and reused while the
  poll's rows are of the same things in the same order (`IdentityColumns`);
- the columns read at this poll go to Arrow in one conversion per type: their values are
  concatenated and the array is sliced (`same_type`), one pa.array call instead of one per column.

Every value read at this poll is still converted at this poll: only what is fixed by the
row's identity is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import chain

import pyarrow as pa

from nodetape.schemas import column_array


def same_type(columns: Sequence[Sequence], typ: pa.DataType) -> list[pa.Array]:
    """Columns of equal length and one Arrow type, converted in one pa.array call and sliced."""
    n = len(columns[0]) if columns else 0
    flat = pa.array(list(chain.from_iterable(columns)), type=typ)
    return [flat.slice(i * n, n) for i in range(len(columns))]


class IdentityColumns:
    """The Arrow arrays of a table's identity columns for one list of things, kept while it holds.

    `get(things, values)` returns the arrays for `things` (a list of objects, compared by
    identity, in row order); `values()` gives each column's Python values and is called only
    when the list differs from the last one.
    """

    __slots__ = ("table", "names", "_things", "_arrays")

    def __init__(self, table: str, names: Sequence[str]):
        self.table = table
        self.names = tuple(names)
        self._things: list | None = None
        self._arrays: list[pa.Array] = []

    def get(self, things: list, values: Callable[[], Sequence[Sequence]]) -> list[pa.Array]:
        if things != self._things:  # list equality: identity first, so O(n) pointer compares
            self._arrays = [column_array(self.table, name, v) for name, v in zip(self.names, values())]
            self._things = list(things)
        return self._arrays
