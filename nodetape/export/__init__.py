"""Exports of a tape into other tools' formats (top layer: reads tapes through nodetape.api)."""
