"""The jsonl event stream: one JSON object per event, byte-stable.

Each line is `{"table": ..., ["host": ...,] <every column in schema order>}`:
keys in a fixed order, compact separators, integers (timestamps included) as
integers, floats as Python's shortest round-trip repr, NULL as null, text as
UTF-8. The same tape and options therefore give the same bytes on any machine
running the same nodetape, which is what `--check` compares.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nodetape.core.errors import UserError

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False).encode


class LineEncoder:
    """(run, values) -> one jsonl line without its newline."""

    def __init__(self, hosts: list | None = None):
        self.multi = hosts is not None and len(hosts) > 1
        self.hosts = hosts
        self._keys: dict = {}

    def __call__(self, run, vals: tuple) -> str:
        name = run.table.name
        keys = self._keys.get(name)
        if keys is None:
            keys = self._keys[name] = (("table", "host") if self.multi else ("table",)) + tuple(run.table.column_names)
        head = (name, self.hosts[run.tape_idx]) if self.multi else (name,)
        return _encode(dict(zip(keys, head + vals)))


class BatchEncoder:
    """(run, RecordBatch) -> the batch's jsonl lines, newline included, as an Arrow string array.

    The bytes are those of LineEncoder, built column-wise: integers through
    Arrow's decimal cast; text and floats through the same JSON encoder as
    LineEncoder, called once per distinct value (string columns are dictionaries
    of a few values) and spread to the rows with a take.
    """

    def __init__(self, hosts: list | None = None):
        self.multi = hosts is not None and len(hosts) > 1
        self.hosts = hosts
        self._keys: dict = {}

    def _parts(self, run) -> tuple[pa.Scalar, list[pa.Scalar]]:
        k = (run.table.name, run.tape_idx)
        got = self._keys.get(k)
        if got is None:
            head = '{"table":' + _encode(run.table.name)
            if self.multi:
                head += ',"host":' + _encode(self.hosts[run.tape_idx])
            # Arrow scalars made once: pyarrow converts a Python str argument on every call
            got = self._keys[k] = (pa.scalar(head, pa.string()),
                                   [pa.scalar(f",{_encode(c)}:", pa.string()) for c in run.table.column_names])
        return got

    def __call__(self, run, b: pa.RecordBatch) -> pa.Array:
        if b.num_rows == 0:
            return pa.array([], pa.string())
        head, keys = self._parts(run)
        args: list = [head]
        for key, col in zip(keys, b.columns):
            args.append(key)
            args.append(_fragments(col))
        args.append(_TAIL)
        out = pc.binary_join_element_wise(*args, _EMPTY)
        return out if isinstance(out, pa.Array) else pa.array([out.as_py()] * b.num_rows, pa.string())


_NULL, _TAIL, _EMPTY = (pa.scalar(x, pa.string()) for x in ("null", "}\n", ""))


def _fragments(col: pa.Array) -> pa.Array | pa.Scalar:
    """The JSON text of every value of an Arrow column, 'null' for NULL."""
    t = col.type
    if col.null_count == len(col):
        return _NULL
    if pa.types.is_integer(t):
        s = pc.cast(col, pa.string())
    else:
        if pa.types.is_dictionary(t):
            if len(col.dictionary) > len(col):
                col = pc.dictionary_encode(col.dictionary_decode())
        else:
            col = pc.dictionary_encode(col)
        texts = pa.array([_encode(v) for v in col.dictionary.to_pylist()], pa.string())
        s = texts.take(col.indices)
    return pc.fill_null(s, _NULL) if s.null_count else s


def chunk_bytes(chunk: pa.Array) -> memoryview:
    """The concatenated UTF-8 values of a string array: its data buffer between its first and last offsets."""
    if len(chunk) == 0:
        return memoryview(b"")
    offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int32, count=chunk.offset + len(chunk) + 1)
    start, end = int(offsets[chunk.offset]), int(offsets[chunk.offset + len(chunk)])
    return memoryview(chunk.buffers()[2])[start:end]


def lines(rows: Iterable, hosts: list | None = None) -> Iterator[str]:
    """jsonl lines (without newline) of merged rows (run, time, values)."""
    enc = LineEncoder(hosts)
    for run, _t, vals in rows:
        yield enc(run, vals)


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
