"""Named DuckDB queries: one .sql file each, with a header that declares it.

Header format (comment lines at the top of the file):

    -- name: throttle_timeline
    -- description: One row per cgroup and window: throttling, CPU use, quota, PSI.
    -- param: window = 1s  (window length; a duration)
    -- columns: cgroup_path, pod_uid, ...

Parameters are bound as DuckDB prepared-statement parameters ($name), never
pasted into SQL text. A parameter whose default is a duration (500ms, 1s, 15m)
is bound as nanoseconds (BIGINT) under the same name; one whose default is an
integer must be given an integer. The queries use the macros of macros.py
(time bucketing), which the library registers once on its connection.

A query whose file is a header only (tables_overview) gets its SQL from
GENERATED, built from the declared tables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources

from nodetape.core.durations import parse_duration_ns
from nodetape.core.errors import QueryError

_HEADER = re.compile(r"^--\s*(name|description|param|columns):\s*(.*)$")
_PARAM = re.compile(r"^(\w+)\s*=\s*(\S+)\s*(?:\((.*)\))?\s*$")


@dataclass
class Param:
    name: str
    default: str
    doc: str = ""

    @property
    def is_duration(self) -> bool:
        try:
            parse_duration_ns(self.default)
            return not self.default.lstrip("-").isdigit()
        except ValueError:
            return False

    def bind(self, text: str):
        if self.is_duration:
            try:
                ns = parse_duration_ns(text)
            except ValueError:
                raise QueryError(f"--param {self.name}={text}: not a duration (e.g. 500ms, 1s, 5m)") from None
            if ns <= 0:
                raise QueryError(f"--param {self.name}={text}: must be a positive duration")
            return ns
        if re.fullmatch(r"-?\d+", self.default):
            if not re.fullmatch(r"\s*-?\d+\s*", text) or not -(2**63) <= int(text) < 2**63:
                raise QueryError(f"--param {self.name}={text}: not an integer (default {self.default})")
            return int(text)
        if re.fullmatch(r"-?\d+", text):
            return int(text)
        if re.fullmatch(r"-?\d+\.\d*", text):
            return float(text)
        return text


@dataclass
class NamedQuery:
    name: str
    description: str
    sql: str
    params: dict[str, Param] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)
    notes: str = ""  # the comment lines after the header: what the query means, caveats

    def bind(self, given: dict[str, str]) -> dict:
        unknown = set(given) - set(self.params)
        if unknown:
            known = ", ".join(self.params) or "none"
            raise QueryError(f"query {self.name}: unknown --param {', '.join(sorted(unknown))} (parameters: {known})")
        values = {}
        for p in self.params.values():
            values[p.name] = p.bind(given.get(p.name, p.default))
        # bind only the parameters the SQL uses: DuckDB rejects unused named parameters
        return {k: v for k, v in values.items() if re.search(rf"\${k}\b", self.sql)}


def parse_query(text: str, fallback_name: str) -> NamedQuery:
    q = NamedQuery(fallback_name, "", text)
    notes: list[str] = []
    for line in text.splitlines():
        m = _HEADER.match(line.strip())
        if not m:
            if line.strip() and not line.strip().startswith("--"):
                break
            if line.strip().startswith("--"):
                notes.append(line.strip()[2:].removeprefix(" "))
            continue
        key, value = m.group(1), m.group(2).strip()
        if key == "name":
            q.name = value
        elif key == "description":
            q.description = value
        elif key == "columns":
            q.columns = [c.strip() for c in value.split(",") if c.strip()]
        elif key == "param":
            pm = _PARAM.match(value)
            if pm:
                q.params[pm.group(1)] = Param(pm.group(1), pm.group(2), (pm.group(3) or "").strip())
    q.notes = "\n".join(notes).strip("\n")
    return q


def tables_overview_sql() -> str:
    """Rows and time span of every declared table, per host (the body of tables_overview)."""
    from nodetape.schemas import TABLES

    selects = []
    for t in TABLES:
        first, last = t.time_columns[0].removesuffix("_ns"), t.time_column.removesuffix("_ns")
        selects.append(f"SELECT host, '{t.name}' AS table_name, count(*) AS rows, min({first}) AS first_ts, "
                       f"max({last}) AS last_ts FROM {t.name} GROUP BY host")
    return "\nUNION ALL ".join(selects) + "\nORDER BY host, table_name;\n"


GENERATED = {"tables_overview": tables_overview_sql}


_INCLUDE = re.compile(r"^[ \t]*--\s*include:\s*(\w+)\s*$", re.M)


def _included(name: str) -> str:
    """The SQL of queries/_NAME.sql without its leading comment lines (they describe the file)."""
    entry = resources.files(__package__) / f"_{name}.sql"
    if not entry.is_file():
        raise QueryError(f"queries/_{name}.sql: no such file (named by an '-- include: {name}' line)")
    lines = entry.read_text().splitlines()
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("--")):
        lines.pop(0)
    return "\n".join(lines)


def expand_includes(text: str) -> str:
    """Each line `-- include: NAME` replaced by the SQL of queries/_NAME.sql (CTEs several queries share)."""
    return _INCLUDE.sub(lambda m: _included(m.group(1)), text)


def catalog() -> dict[str, NamedQuery]:
    """The named queries: queries/*.sql; files whose name starts with '_' are parts they include."""
    out = {}
    for entry in sorted(resources.files(__package__).iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql") and not entry.name.startswith("_"):
            q = parse_query(expand_includes(entry.read_text()), entry.name[:-4])
            if q.name in GENERATED:
                q.sql = q.sql.rstrip("\n") + "\n" + GENERATED[q.name]()
            out[q.name] = q
    return out


def get(name: str) -> NamedQuery:
    cat = catalog()
    if name not in cat:
        raise QueryError(f"unknown query {name!r} (see 'nodetape query --list': {', '.join(cat) or 'none'})")
    return cat[name]
