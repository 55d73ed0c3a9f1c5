"""Errors a user can act on. The CLI maps them to exit codes (DESIGN.md):
UserError -> 2 with one line; anything else -> 1."""

from __future__ import annotations


class NodetapeError(Exception):
    """Base of nodetape's own errors."""

    exit_code = 1


class UserError(NodetapeError):
    """Bad usage or bad input: the message is one line naming the file or option."""

    exit_code = 2

    def __init__(self, message: str, path: str | None = None):
        self.path = path
        super().__init__(message)


class TapeError(UserError):
    """A tape (or one of its files) is missing, corrupt or from a newer schema."""


class QueryError(UserError):
    """Unknown query, bad parameter or bad SQL."""


class SourceUnavailable(NodetapeError):
    """A source cannot run on this node; the reason goes to the manifest."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)
