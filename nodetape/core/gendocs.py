"""The shared entry point of generated docs (schema, queries, CLI reference).

    python -m nodetape.schemas.docs            print the page
    python -m nodetape.schemas.docs --write    rewrite it in docs/
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path


def main(render: Callable[[], str], path: Path, argv: list[str]) -> int:
    text = render()
    if "--write" in argv:
        path.write_text(text)
        print(f"wrote {path}")
    else:
        sys.stdout.write(text)
    return 0
