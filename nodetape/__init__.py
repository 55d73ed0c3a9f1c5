"""nodetape: a flight recorder for Linux and Kubernetes nodes.

    import nodetape
    tapes = nodetape.open("/tmp/tape")          # one DuckDB connection over the tape(s)
    tapes.query("pod_births").to_pandas()

`open` is loaded on first use (module __getattr__), so `import nodetape` stays light.
"""

from nodetape.core.version import __version__

__all__ = ["__version__", "open"]


def __getattr__(name: str):
    if name == "open":
        from nodetape.api import open as open_

        return open_
    raise AttributeError(f"module 'nodetape' has no attribute {name!r}")
