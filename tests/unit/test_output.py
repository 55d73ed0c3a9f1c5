"""Terminal tables: cut to a terminal's width, never when piped."""

import pyarrow as pa

from nodetape.output import MIN_CELL, fit_widths, render_table

LONG = "/kubepods/burstable/pod0f3c2b1a-8d7e-4f6a-9b5c-1d2e3f4a5b6c/" + "c" * 64


def _table():
    return pa.table({"cgroup_path": [LONG, "/short"], "pct": [99.5, 0.0], "meaning": ["x" * 90, "y"]})


def test_no_width_no_cut():
    out = render_table(_table())
    assert LONG in out and "x" * 90 in out and "…" not in out


def test_a_terminal_width_shortens_the_widest_columns_until_lines_fit():
    out = render_table(_table(), max_width=80)
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines), [len(line) for line in lines]
    assert "…" in lines[2] and "99.5" in lines[2]  # numbers are never the ones cut here
    assert lines[-1] == "(2 rows)"


def test_fit_widths():
    assert fit_widths([10, 50, 30], 200) == [10, 50, 30]
    assert sum(fit_widths([10, 50, 30], 60)) == 60
    assert fit_widths([10, 50, 30], 60)[0] == 10  # narrow columns are left alone
    assert fit_widths([20, 20], 10) == [MIN_CELL, MIN_CELL]  # never below the floor
