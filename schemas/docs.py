"""Render docs/schema.md from the declared tables (python -m nodetape.schemas.docs)."""

from __future__ import annotations

import sys
from pathlib import Path

from . import SCHEMA_VERSION, TABLES
from nodetape.core.gendocs import main as gendocs_main


def _type_name(t) -> str:
    s = str(t)
    if s.startswith("dictionary<values=string"):
        return "string"
    return s


def render_markdown() -> str:
    out = [
        "# Tape tables",
        "",
        f"Schema version {SCHEMA_VERSION}. Generated from `schemas/tables.py` by",
        "`python -m nodetape.schemas.docs --write`; a test fails when this file is stale.",
        "",
        "Every `*_ns` column with unit `boottime_ns` is CLOCK_BOOTTIME; the tape reader adds a",
        "TIMESTAMP twin without the `_ns` suffix (`ts_ns` -> `ts`) and a `host` column.",
        "NULL means the kernel did not say; it is never written as 0.",
        "",
    ]
    for t in TABLES:
        out += [f"## {t.name}", "", t.doc, "", "| column | type | unit | meaning |", "|---|---|---|---|"]
        for c in t.columns:
            null = "" if c.nullable else " (not null)"
            out.append(f"| `{c.name}` | {_type_name(c.type)}{null} | {c.unit} | {c.doc} |")
        out.append("")
    return "\n".join(out)


DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "schema.md"


if __name__ == "__main__":
    raise SystemExit(gendocs_main(render_markdown, DOC_PATH, sys.argv[1:]))
