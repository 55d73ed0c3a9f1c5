"""DuckDB macros the named queries share, registered once on a connection.

Time bucketing: a window of `window_ns` nanoseconds, aligned on wall-clock time
(epoch microseconds), as the named queries' `window` parameter means it.

    bucket_us(t_us, window_ns)      start of the window holding t_us (epoch microseconds)
    bucket_end(w_us, window_ns)     the window's end as a TIMESTAMP, from its start w_us

Kept as data (name, parameters, body) so another engine can define or expand them too.
"""

from __future__ import annotations

MACROS: dict[str, tuple[tuple[str, ...], str]] = {
    "bucket_us": (("t_us", "window_ns"), "(t_us // (window_ns // 1000)) * (window_ns // 1000)"),
    "bucket_end": (("w_us", "window_ns"), "make_timestamp(w_us + window_ns // 1000)"),
}


def statements() -> list[str]:
    return [f"CREATE OR REPLACE TEMP MACRO {name}({', '.join(args)}) AS {body}"
            for name, (args, body) in MACROS.items()]


def register(con):
    """Define every macro on the DuckDB connection `con`; returns it."""
    for stmt in statements():
        con.execute(stmt)
    return con
