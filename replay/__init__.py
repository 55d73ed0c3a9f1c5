"""Deterministic replay of tapes: an ordered event stream, a Python API, and sinks.

    from nodetape import replay
    events = list(replay.open("/tmp/tape").events(tables=["cgroup_events"]))

See docs/replay.md.
"""

from .stream import Event, Replay, open  # noqa: A004 - `replay.open` is the API

__all__ = ["Event", "Replay", "open"]
