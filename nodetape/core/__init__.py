"""The bottom layer: errors, the one clock, durations and sizes, host facts. Imports nothing of nodetape's."""
