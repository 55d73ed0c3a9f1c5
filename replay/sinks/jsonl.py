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

    def write(self, line: str) -> None:
        if self.live:
            self.out.write(line + "\n")
            self.out.flush()
            return
        self._buf.append(line)
        if len(self._buf) >= 4096:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            self.out.write("\n".join(self._buf) + "\n")
            self._buf.clear()
        self.out.flush()


class CheckSink:
    """Compares the stream with an expected jsonl file, line by line, streaming both."""

    def __init__(self, expected: IO[str]):
        self.expected = expected
        self.line_no = 0
        self.diff: tuple[int, str | None, str | None] | None = None

    def write(self, line: str) -> bool:
        """False once the first difference is found (the caller stops)."""
        self.line_no += 1
        exp = self.expected.readline()
        exp = exp[:-1] if exp.endswith("\n") else (exp or None)
        if exp != line:
            self.diff = (self.line_no, exp, line)
            return False
        return True

    def finish(self) -> bool:
        if self.diff is None:
            extra = self.expected.readline()
            if extra:
                self.diff = (self.line_no + 1, extra.rstrip("\n"), None)
        return self.diff is None

    def report(self) -> str:
        n, exp, got = self.diff
        return (f"replay differs from the expected stream at event {n}:\n"
                f"- expected: {exp if exp is not None else '<end of file>'}\n"
                f"+ replayed: {got if got is not None else '<end of stream>'}\n")
