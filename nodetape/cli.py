"""The nodetape command line: parse, call the API, render, map errors to exit codes.

Exit codes (DESIGN.md): 0 success; 2 bad usage or bad input, with one line naming
the file or option; 1 internal error. No traceback reaches a user unless
NODETAPE_DEBUG=1.

The commands live in cli_record (record, snapshot), cli_read (verify, info, query,
sql, report), cli_move (replay, export, push, compact) and cli_node (doctor, demo, schema),
each a thin shell over nodetape.api; importing them here registers them on the one
Typer app (cli_app), in the order `--help` lists them.
"""

from __future__ import annotations

import sys

import typer

# importing a command module registers its commands, in this order in --help
from nodetape import cli_record  # noqa: F401, I001
from nodetape import cli_read  # noqa: F401
from nodetape import cli_move  # noqa: F401
from nodetape import cli_node  # noqa: F401
from nodetape import cli_options as opts
from nodetape.cli_app import app

__all__ = ["app", "main", "run"]


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (used by main and by tests)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return opts.run_command(typer.main.get_command(app), argv)


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
