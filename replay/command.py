"""`nodetape replay` (issue 6 fills this in)."""

from ..errors import NodetapeError


def run_replay(**kwargs) -> int:
    raise NodetapeError("replay is not built yet in this version")
