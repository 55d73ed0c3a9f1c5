"""Terminal tables: fitted to a terminal with rich, never cut when piped; formats stable."""

import io

import pyarrow as pa
from rich.console import Console

from nodetape.output import print_table, render_table, rich_table, write_csv, write_json

LONG = "/kubepods/burstable/pod0f3c2b1a-8d7e-4f6a-9b5c-1d2e3f4a5b6c/" + "c" * 64


def _table():
    return pa.table({"cgroup_path": [LONG, "/short"], "pct": [99.5, 0.0], "meaning": ["x" * 90, "y"]})


def _on_terminal(table, width: int) -> list[str]:
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None, force_terminal=False).print(rich_table(table))
    return buf.getvalue().splitlines()


def test_piped_table_is_the_plain_text_and_nothing_is_cut():
    buf = io.StringIO()  # not a terminal
    print_table(_table(), buf)
    assert buf.getvalue() == render_table(_table())
    lines = buf.getvalue().splitlines()
    assert LONG in lines[2] and "x" * 90 in lines[2] and "…" not in buf.getvalue()
    assert lines[0].split() == ["cgroup_path", "pct", "meaning"] and set(lines[1]) == {"-", " "}
    assert lines[-1] == "(2 rows)"


def test_plain_table_is_aligned_numbers_right():
    t = pa.table({"name": ["a", "bbb"], "n": [1, 1000]})
    assert render_table(t) == "name     n\n----  ----\na        1\nbbb   1000\n(2 rows)\n"


def test_on_a_terminal_the_widest_columns_are_cut_until_lines_fit():
    lines = _on_terminal(_table(), 80)
    assert all(len(line) <= 80 for line in lines), [len(line) for line in lines]
    row = next(line for line in lines if "99.5" in line)
    assert "…" in row  # numbers are never the ones cut here
    assert lines[-1].strip() == "(2 rows)"


def test_terminal_cells_show_control_characters_escaped():
    lines = "\n".join(_on_terminal(pa.table({"v": ["a\x1b[31mred"]}), 80))
    assert "\x1b" not in lines and "\\x1b[31mred" in lines


def test_text_formats_are_stable():
    t = pa.table({"a": [1, None], "f": [0.1234567, 2e7]})
    csv, js = io.StringIO(), io.StringIO()
    write_csv(t, csv)
    write_json(t, js)
    assert csv.getvalue() == "a,f\n1,0.123457\n,2e+07\n"
    assert js.getvalue() == '[\n  {"a": 1, "f": 0.1234567},\n  {"a": null, "f": 20000000.0}\n]\n'


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _recorder():
    from types import SimpleNamespace as NS

    from nodetape.core.clock import boottime_ns

    state = NS(source=NS(stats=NS(dropped=2)), status="active")
    return NS(start_ns=boottime_ns(), rows={"cgroup_samples": 1200, "recorder_stats": 5}, states=[state], writer=None)


def test_live_progress_redraws_one_line_on_a_terminal_and_clears_it():
    from nodetape.progress import LiveProgress

    term = _Terminal()
    live = LiveProgress(term)
    live(_recorder())
    live(_recorder())
    live.finish()
    out = term.getvalue()
    assert out.count("cgroup_samples 1,200  drops 2") >= 2 and "recorder_stats" not in out
    assert out.endswith("\x1b[2K")  # the line is gone when recording ends


def test_live_progress_is_silent_off_a_terminal():
    from nodetape.progress import LiveProgress

    piped = io.StringIO()
    live = LiveProgress(piped)
    live(_recorder())
    live.finish()
    assert piped.getvalue() == ""
