"""docs/cli.md is generated from --help: it must be current and name every command."""

from nodetape.cli_docs import DOC_PATH, commands, render_markdown


def test_cli_reference_is_current():
    assert DOC_PATH.read_text() == render_markdown(), "docs/cli.md is stale: python -m nodetape.cli_docs --write"


def test_every_command_is_documented():
    text = DOC_PATH.read_text()
    for c in commands():
        assert f"## nodetape {c}\n" in text, c
