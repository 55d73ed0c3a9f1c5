"""The package version, kept at the bottom layer so the tape format can stamp it."""

__version__ = "0.1.0"
