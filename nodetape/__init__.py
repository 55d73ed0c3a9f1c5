"""nodetape: a flight recorder for Linux and Kubernetes nodes."""

from nodetape.core.version import __version__

__all__ = ["__version__"]
