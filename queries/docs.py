"""Render docs/queries.md from the named queries' headers (python -m nodetape.queries.docs --write)."""

from __future__ import annotations

import sys
from pathlib import Path

from . import catalog
from nodetape.core.gendocs import main as gendocs_main

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "queries.md"


def render_markdown() -> str:
    out = [
        "# Named queries",
        "",
        "Generated from the headers of `queries/*.sql` by `python -m nodetape.queries.docs --write`;",
        "a test fails when this file is stale.",
        "",
        "Run one with `nodetape query TAPE NAME [--param k=v]... [--format table|csv|json|jsonl|parquet]`;",
        "list them with `nodetape query --list`. Parameters are bound, never pasted into the SQL;",
        "a duration parameter (`500ms`, `1s`, `15m`) is bound as nanoseconds. Several tapes may be",
        "given: every query has a `host` column.",
        "",
    ]
    for q in catalog().values():
        out += [f"## {q.name}", "", q.description, ""]
        if q.params:
            out += ["| parameter | default | meaning |", "|---|---|---|"]
            out += [f"| `{p.name}` | `{p.default}` | {p.doc} |" for p in q.params.values()]
            out.append("")
        out += ["Columns: " + ", ".join(f"`{c}`" for c in q.columns), ""]
        if q.notes:
            out += ["```", q.notes, "```", ""]
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(gendocs_main(render_markdown, DOC_PATH, sys.argv[1:]))
