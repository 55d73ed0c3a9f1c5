"""Render docs/cli.md from the CLI's own --help (python -m nodetape.cli_docs --write).

The reference is generated, never written by hand, and a test fails when it is
stale or when a command is missing from it (as sqlite-utils does).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from nodetape.core.gendocs import main as gendocs_main

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def commands() -> list[str]:
    import typer

    from .cli import app

    group = typer.main.get_command(app)
    return list(group.commands)


def help_text(*args: str) -> str:
    # a fixed width and no colour, so the text is the same on every machine
    env = dict(os.environ, COLUMNS="100", NO_COLOR="1", TERM="dumb")
    env.pop("FORCE_COLOR", None)
    r = subprocess.run([sys.executable, "-m", "nodetape.cli", *args, "--help"], capture_output=True, text=True,
                       env=env, check=True)
    return "\n".join(line.rstrip() for line in r.stdout.strip("\n").splitlines())


def render_markdown() -> str:
    out = ["# Command line reference", "",
           "Generated from `nodetape --help` by `python -m nodetape.cli_docs --write`; a test fails when it is stale.",
           "", "```", help_text(), "```", ""]
    for c in commands():
        out += [f"## nodetape {c}", "", "```", help_text(c), "```", ""]
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(gendocs_main(render_markdown, DOC_PATH, sys.argv[1:]))
