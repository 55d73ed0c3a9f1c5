"""The one jsonl encoder: replay's event stream and every read command's `--format jsonl`.

Each line is one JSON object: keys in a fixed order (replay: `{"table": ...,
["host": ...,] <every column in schema order>}`), compact separators, integers
(timestamps included) as integers, floats as Python's shortest round-trip repr
(NaN and infinities as null: JSON has no such numbers), NULL as null, text as
UTF-8. Control characters of tape values are escaped (JSON escapes U+0000-U+001F;
U+007F-U+009F, which some terminals act on, are escaped too), so printing a
stream on a terminal never lets a tape drive it. The same tape and options give
the same bytes on any machine running the same nodetape, which is what `--check`
compares.

Lines are built column-wise: integers through Arrow's decimal cast; other values
through one JSON encoding per distinct value (string columns are dictionaries
of a few values) spread to the rows with a take; no Python per row.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nodetape.core.errors import UserError

_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False).encode
# C1 controls and DEL: valid raw in JSON, but a terminal may act on them
_C1 = {c: f"\\u{c:04x}" for c in range(0x7F, 0xA0)}


def plain(v):
    """A JSON-friendly Python value."""
    if isinstance(v, dt.datetime):
        return v.isoformat(timespec="microseconds")
    if isinstance(v, (dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, dt.timedelta):
        return v.total_seconds()
    if isinstance(v, Decimal):
        # DuckDB's sum() of integers is a HUGEINT, which arrives as a decimal
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v


def encode_value(v) -> str:
    """One value's JSON text, as every jsonl line spells it."""
    return _json(plain(v)).translate(_C1)


_NULL, _TAIL, _EMPTY = (pa.scalar(x, pa.string()) for x in ("null", "}\n", ""))


def _fragments(col: pa.Array) -> pa.Array | pa.Scalar:
    """The JSON text of every value of an Arrow column, 'null' for NULL."""
    t = col.type
    if col.null_count == len(col):
        return _NULL
    if pa.types.is_integer(t):
        s = pc.cast(col, pa.string())
    else:
        try:
            if pa.types.is_dictionary(t):
                if len(col.dictionary) > len(col):
                    col = pc.dictionary_encode(col.dictionary_decode())
            else:
                col = pc.dictionary_encode(col)
        except pa.ArrowNotImplementedError:  # nested types (lists, structs) have no dictionary
            return pa.array([encode_value(v) for v in col.to_pylist()], pa.string())
        texts = pa.array([encode_value(v) for v in col.dictionary.to_pylist()], pa.string())
        s = texts.take(col.indices)
    return pc.fill_null(s, _NULL) if s.null_count else s


def encode_lines(columns, head: pa.Scalar, keys: list[pa.Scalar]) -> pa.Array:
    """Lines (newline included) of rows given column-wise: head, then key + value per column."""
    args: list = [head]
    for key, col in zip(keys, columns):
        args.append(key)
        args.append(_fragments(col))
    args.append(_TAIL)
    n = len(columns[0]) if columns else 0
    out = pc.binary_join_element_wise(*args, _EMPTY)
    return out if isinstance(out, pa.Array) else pa.array([out.as_py()] * n, pa.string())


def _key_scalars(names, first_comma: bool) -> list[pa.Scalar]:
    # Arrow scalars made once: pyarrow converts a Python str argument on every call
    return [pa.scalar(("," if (i or first_comma) else "") + f"{encode_value(c)}:", pa.string())
            for i, c in enumerate(names)]


class BatchEncoder:
    """(run, RecordBatch) -> the batch's replay jsonl lines, newline included, as an Arrow string array."""

    def __init__(self, hosts: list | None = None):
        self.multi = hosts is not None and len(hosts) > 1
        self.hosts = hosts
        self._keys: dict = {}

    def _parts(self, run) -> tuple[pa.Scalar, list[pa.Scalar]]:
        k = (run.table.name, run.tape_idx)
        got = self._keys.get(k)
        if got is None:
            head = '{"table":' + encode_value(run.table.name)
            if self.multi:
                head += ',"host":' + encode_value(self.hosts[run.tape_idx])
            got = self._keys[k] = (pa.scalar(head, pa.string()), _key_scalars(run.table.column_names, True))
        return got

    def __call__(self, run, b: pa.RecordBatch) -> pa.Array:
        if b.num_rows == 0:
            return pa.array([], pa.string())
        head, keys = self._parts(run)
        return encode_lines(b.columns, head, keys)


def write_table(table: pa.Table, out: IO[str]) -> None:
    """A table (any read command's result) as jsonl: one object per row, columns in order."""
    head, keys = pa.scalar("{", pa.string()), _key_scalars(table.column_names, False)
    if not table.num_columns:
        out.write("{}\n" * table.num_rows)
        return
    for b in table.to_batches(max_chunksize=CHUNK_LINES):
        if b.num_rows:
            out.write(bytes(chunk_bytes(encode_lines(b.columns, head, keys))).decode("utf-8"))


CHUNK_LINES = 8192


def chunk_bytes(chunk: pa.Array) -> memoryview:
    """The concatenated UTF-8 values of a string array: its data buffer between its first and last offsets."""
    if len(chunk) == 0:
        return memoryview(b"")
    offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int32, count=chunk.offset + len(chunk) + 1)
    start, end = int(offsets[chunk.offset]), int(offsets[chunk.offset + len(chunk)])
    return memoryview(chunk.buffers()[2])[start:end]


class JsonlSink:
    """Writes lines to a text stream; flushes every line when a consumer watches live."""

    def __init__(self, out: IO[str], live: bool):
        self.out = out
        self.live = live
        self._buf: list[str] = []
        # a UTF-8 text file takes the encoded lines straight into its byte buffer
        enc = (getattr(out, "encoding", None) or "").lower().replace("-", "")
        self._raw = getattr(out, "buffer", None) if enc == "utf8" else None

    def write(self, line: str) -> None:
        if self.live:
            self.out.write(line + "\n")
            self.out.flush()
            return
        self._buf.append(line)
        if len(self._buf) >= 4096:
            self.flush()

    def write_bytes(self, data: memoryview) -> None:
        """Several whole lines at once, UTF-8, each ending in a newline."""
        if self._buf:
            self.flush()
        if self._raw is not None:
            self.out.flush()  # whatever went through the text layer goes first
            self._raw.write(data)
        else:
            self.out.write(bytes(data).decode("utf-8"))

    def flush(self) -> None:
        if self._buf:
            self.out.write("\n".join(self._buf) + "\n")
            self._buf.clear()
        self.out.flush()


class CheckSink:
    """Compares the stream with an expected jsonl file (opened binary), line by line, streaming both."""

    def __init__(self, expected: IO[bytes]):
        self.expected = expected
        self.name = getattr(expected, "name", "expected file")
        self.line_no = 0
        self.diff: tuple[int, str | None, str | None] | None = None

    def _next(self) -> str | None:
        """The expected file's next line without its newline; None at its end. A line that is not
        UTF-8 text (a binary file) is bad input: UserError naming the file and line."""
        raw = self.expected.readline()
        if not raw:
            return None
        try:
            if b"\0" in raw:
                raise UnicodeDecodeError("utf-8", raw, raw.index(b"\0"), raw.index(b"\0") + 1, "NUL byte")
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(f"--check {self.name}: line {self.line_no + 1} is not UTF-8 text "
                            "(expected the jsonl stream of a replay)", str(self.name)) from None
        return text[:-1] if text.endswith("\n") else text

    def write(self, line: str) -> bool:
        """False once the first difference is found (the caller stops)."""
        exp = self._next()
        self.line_no += 1
        if exp != line:
            self.diff = (self.line_no, exp, line)
            return False
        return True

    def write_bytes(self, data: memoryview) -> bool:
        """Several whole lines, UTF-8, each ending in a newline; False at the first difference."""
        for line in bytes(data).decode("utf-8").split("\n")[:-1]:
            if not self.write(line):
                return False
        return True

    def finish(self) -> bool:
        if self.diff is None:
            extra = self._next()
            if extra is not None:
                self.diff = (self.line_no + 1, extra, None)
        return self.diff is None

    def report(self) -> str:
        n, exp, got = self.diff
        return (f"replay differs from the expected stream at event {n}:\n"
                f"- expected: {exp if exp is not None else '<end of file>'}\n"
                f"+ replayed: {got if got is not None else '<end of stream>'}\n")
