"""`nodetape report` (issue 5 fills this in)."""

from .errors import NodetapeError


def run_report(tapes, html) -> None:
    raise NodetapeError("report is not built yet in this version")
