"""`nodetape replay`: options -> selection -> sinks, with pacing. Thin over stream.py."""

from __future__ import annotations

import math
import sys
from pathlib import Path

from nodetape.core.errors import TapeError, UserError
from .pace import Pacer
from .sinks import jsonl
from .sinks.cgroupfs import TABLES as INTO_TABLES
from .stream import Replay, open as open_replay

# --speed below this would hold one recorded second for over eleven days: a typo, not a pace
MIN_SPEED = 1e-6


def choose_speed(speed: float | None, max_speed: bool, *, into: bool, out_is_tty: bool,
                 check: bool = False) -> float | None:
    """None means as fast as possible.

    --speed wins, then --max; otherwise re-enacting (--into) goes at the recorded
    pace (a live consumer is the point), a terminal gets the recorded pace, and
    a pipe or file, and --check, get everything at once.
    """
    if speed is not None and max_speed:
        raise UserError("--speed and --max exclude each other")
    if speed is not None:
        if not speed > 0:
            raise UserError(f"--speed: must be positive, got {speed}")
        if speed < MIN_SPEED:
            raise UserError(f"--speed: {speed} is too slow (at least {MIN_SPEED:g})")
        return None if math.isinf(speed) else float(speed)
    if max_speed:
        return None
    if into:
        return 1.0
    if check:
        return None
    return 1.0 if out_is_tty else None


def _check_options(tapes, fmt, into, out, output, check, prepare_only) -> None:
    if prepare_only and into is None:
        raise UserError("--prepare makes the layout of an --into folder: give --into DIR")
    if fmt != "jsonl":
        raise UserError(f"--format: replay streams jsonl only, got {fmt!r}")
    if check is not None and (into is not None or out is not None or output is not None):
        raise UserError("--check compares the jsonl stream; it does not combine with --into, --out or --output")
    if into is not None and len(tapes) > 1:
        raise UserError("--into: re-enact one tape at a time (one node's cgroup tree)")


def _open_check(check):
    if check is None:
        return None
    try:
        return open(check, "rb")
    except OSError as e:
        raise UserError(f"--check {check}: cannot read: {e.strerror}", str(check)) from None


def _into_sink(rp: Replay, sel, into, allow_cgroupfs: bool):
    """The --into sink, its manifest layout and every row it will apply validated first."""
    from .guard import check_selection
    from .sinks.cgroupfs import CgroupfsSink

    sink = CgroupfsSink(Path(into), rp.manifest.get("cgroup") or {}, allow_cgroupfs=allow_cgroupfs)
    into_sel = rp.select_tables(sel, INTO_TABLES)
    check_selection(rp.runs(into_sel), into_sel.lo, into_sel.hi, into_sel.rf)
    return sink


def _prepare(sink, into) -> None:
    try:
        sink.prepare()
    except OSError as e:
        raise UserError(f"--into {into}: cannot create the tree: {e.strerror}", str(into)) from None


def _open_output(output, stdout):
    if output is None:
        return stdout, False
    try:
        return open(output, "w", encoding="utf-8"), True
    except OSError as e:
        raise UserError(f"--output {output}: cannot write: {e.strerror}", str(output)) from None


def run_replay(tapes, speed=None, max_speed=False, from_=None, to=None, tables=None, cgroup=None, pod=None,
               fmt="jsonl", output=None, into=None, out=None, check=None, prepare_only=False, *, stdout=None,
               clock=None, sleep=None, allow_cgroupfs=False) -> int:
    stdout = stdout or sys.stdout
    _check_options(tapes, fmt, into, out, output, check, prepare_only)
    rp: Replay = open_replay(tapes)
    sel = rp.select(from_, to, tables, cgroup, pod)
    sink_into = _into_sink(rp, sel, into, allow_cgroupfs) if into is not None else None
    if prepare_only:
        _prepare(sink_into, into)
        print(f"{sink_into.describe()} ready in {into}: start 'nodetape record OUT --cgroup-root {into}', "
              "then replay without --prepare", file=sys.stderr)
        sink_into.close()
        return 0
    if out is not None:
        from .sinks.tape import write_slice

        from ..recorder.k8s import pod_uid_of

        write_slice(rp, sel, Path(out), {"cgroup": cgroup, "pod": pod_uid_of(pod) if pod else None})
        if into is None and output is None:
            return 0
    if sink_into is not None:
        _prepare(sink_into, into)
        if output is None:
            sel = rp.select_tables(sel, INTO_TABLES)  # only the cgroup tables drive the tree: skip the others
    expected = _open_check(check)
    stream_out, close_out = (None, False) if check is not None or (into is not None and output is None) \
        else _open_output(output, stdout)
    isatty = getattr(stdout, "isatty", lambda: False)()
    spd = choose_speed(speed, max_speed, into=into is not None, out_is_tty=isatty and output is None,
                       check=check is not None)
    kw = {k: v for k, v in (("clock", clock), ("sleep", sleep)) if v is not None}
    pacer = Pacer(spd, sel.start_ns, **kw)
    try:
        return _stream(rp, sel, pacer, stream_out, expected, sink_into, stdout)
    finally:
        if close_out:
            stream_out.close()
        if expected is not None:
            expected.close()
        if sink_into is not None:
            sink_into.close()


def _stream(rp: Replay, sel, pacer: Pacer, stream_out, expected, sink_into, stdout) -> int:
    js = jsonl.JsonlSink(stream_out, live=pacer.paced) if stream_out is not None else None
    chk = jsonl.CheckSink(expected) if expected is not None else None
    need_lines = js is not None or chk is not None
    try:
        code = _pump(rp, sel, pacer, js, chk, sink_into, need_lines)
        if chk is not None and code == 0 and not chk.finish():
            code = 1
    except OSError as e:
        if isinstance(e, BrokenPipeError):
            raise
        raise TapeError(f"replay: {e}") from None
    finally:
        if js is not None:
            try:
                js.flush()
            except BrokenPipeError:
                pass
    if chk is not None and code != 0:
        stdout.write(chk.report())
    return code


def _pump(rp: Replay, sel, pacer: Pacer, js, chk, into, need_lines: bool) -> int:
    if need_lines and into is None and not pacer.paced:
        return _pump_chunks(rp, sel, js, chk)
    pacer.start()
    rows = rp.rows_with_text(sel, jsonl.BatchEncoder(rp.hosts)) if need_lines else rp.rows(sel)
    for run, t, vals, *text in rows:
        if pacer.paced:
            pacer.wait(t + run.shift_ns)
        if into is not None and run.table.name in INTO_TABLES:
            into.write(run.table.name, dict(zip(run.table.column_names, vals)))
        if need_lines:
            line = text[0][:-1]  # without its newline
            if js is not None:
                js.write(line)
            if chk is not None and not chk.write(line):
                return 1
    return 0


def _pump_chunks(rp: Replay, sel, js, chk) -> int:
    """Unpaced jsonl without --into: lines encoded column-wise per batch, merged in chunks."""
    enc = jsonl.BatchEncoder(rp.hosts)
    for chunk in rp.chunks(sel, enc):
        data = jsonl.chunk_bytes(chunk)
        if js is not None:
            js.write_bytes(data)
        if chk is not None and not chk.write_bytes(data):
            return 1
    return 0

