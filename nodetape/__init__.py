"""nodetape: a flight recorder for Linux and Kubernetes nodes."""

__version__ = "0.1.0"
