"""`nodetape demo` (issue 7 fills this in)."""

from .errors import NodetapeError


def run_demo(out, seconds, bpf) -> int:
    raise NodetapeError("demo is not built yet in this version")
