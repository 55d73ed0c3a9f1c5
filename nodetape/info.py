"""A readable summary of a tape (`nodetape info`).

Every value comes from an untrusted manifest: the terminal rendering escapes
control characters (an ESC sequence in a hostname must not drive the terminal),
so each line printed is one line of plain text.
"""

from __future__ import annotations

import datetime as dt
import re

from nodetape.core.durations import format_duration_ns
from nodetape.tape.reader import Tape


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def escape_control(text: str) -> str:
    """Control characters (C0, DEL, C1) as visible escapes: `\x1b` instead of an ESC."""
    return _CONTROL.sub(lambda m: {"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(m.group(), f"\\x{ord(m.group()):02x}"),
                        text)


def wall(tape: Tape, boot_ns: int | None) -> str:
    if boot_ns is None:
        return "-"
    try:
        t = dt.datetime.fromtimestamp((boot_ns + tape.offset_at(boot_ns)) / 1e9, tz=dt.timezone.utc)
    except (OverflowError, ValueError, OSError):
        return f"boottime {boot_ns} ns (wall time out of range)"
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def summary(tape: Tape) -> dict:
    m = tape.manifest
    # not closed: the last flush is as far as the tape goes
    last = m.end_ns if m.end_ns is not None else m.last_flush_ns
    return {
        "path": str(tape.path),
        "host": m.host,
        "schema_version": m.schema_version,
        "nodetape_version": m.nodetape_version,
        "format_version": m.format_version,
        "start": wall(tape, m.start_ns),
        "end": wall(tape, last),
        "duration": format_duration_ns(last - m.start_ns) if last and m.start_ns else None,
        "closed_cleanly": m.closed,
        "stop_reason": m.stop_reason,
        "retention": m.retention,
        "writer_dropped": (m.writer or {}).get("dropped") or {},
        "disk_full": m.disk_full,
        "snapshot_of": m.snapshot,
        "snapshots": m.snapshots or [],
        "clock_pairs": len(m.clock.pairs),
        "cgroup_mode": m.cgroup.mode,
        "sources": {k: s.to_dict() for k, s in m.sources.items()},
        "tables": {t: {"rows": len_rows(tape, t), "parts": len(p), "bytes": _size(p),
                       "dropped": (m.tables[t].dropped if t in m.tables else None) or 0}
                   for t, p in tape.parts.items() if p},
        "skipped": list(tape.skipped),
    }


def _size(parts) -> int:
    total = 0
    for x in parts:
        try:
            total += x.stat().st_size
        except FileNotFoundError:
            pass  # retired by a live recorder just now
    return total


def len_rows(tape: Tape, table: str) -> int:
    import pyarrow.parquet as pq

    n = 0
    for p in tape.parts[table]:
        try:
            n += pq.read_metadata(p).num_rows
        except FileNotFoundError:
            pass
    return n


def render(tape: Tape) -> str:
    lines = _lines(summary(tape))
    return "\n".join(escape_control(line) for line in lines) + "\n"


def _lines(s: dict) -> list[str]:
    h = s["host"]
    lines = [
        f"tape      {s['path']}",
        f"host      {h.get('hostname')}  kernel {h.get('kernel_release')}  {h.get('machine')}  cpus {h.get('cpus')}",
        f"boot id   {h.get('boot_id')}",
        f"cgroups   {s['cgroup_mode']}",
        f"recorded  {s['start']} -> {s['end']}  ({s['duration'] or '?'})",
        f"schema    {s['schema_version']}  (nodetape {s['nodetape_version']})",
    ]
    if not s["closed_cleanly"]:
        lines.append("state     NOT CLOSED CLEANLY: the recorder was killed or crashed, or is still "
                     "recording; rows after the last flush are not in the tape")
    if s["stop_reason"]:
        lines.append(f"stopped   {s['stop_reason']}")
    if s["disk_full"]:
        d = s["disk_full"]
        lines.append(f"disk full {d.get('action') or ''}{' (fatal)' if d.get('fatal') else ''}".rstrip())
    r = s["retention"]
    if r:
        bound = []
        if r.get("retain_ns"):
            bound.append(f"window {format_duration_ns(r['retain_ns'])}")
        if r.get("max_bytes"):
            bound.append(f"max {_bytes(r['max_bytes'])}")
        lines.append(f"retention {', '.join(bound) or '-'}: {r.get('retired_parts', 0)} parts "
                     f"({r.get('retired_rows', 0)} rows, {_bytes(r.get('retired_bytes', 0))}) retired")
    if s["snapshot_of"]:
        so = s["snapshot_of"]
        lines.append(f"snapshot  of {so.get('of')} ({so.get('reason')})")
    if s["snapshots"]:
        lines.append(f"snapshots {len(s['snapshots'])} taken, last: {s['snapshots'][-1].get('path')}")
    if s["clock_pairs"] > 1:
        lines.append(f"clock     {s['clock_pairs']} wall-clock pairs (the wall clock stepped during the recording)")
    lines += ["", "sources"]
    width = max([len(n) for n in s["sources"]] + [6])
    for name, st in s["sources"].items():
        status = str(st.get("status"))
        detail = f"{st.get('events', 0)} events, {st.get('dropped', 0)} dropped" if status in ("active", "stopped") else (st.get("reason") or "")
        if status in ("active", "stopped") and st.get("dropped"):
            detail += f" ({st.get('drop_reason')})"
        if status == "failed":
            detail = st.get("reason") or ""
        lines.append(f"  {name:<{width}}  {status:<11}  {detail}")
    lines += ["", "tables"]
    if not s["tables"]:
        lines.append("  (no rows)")
    for t, info in s["tables"].items():
        lines.append(f"  {t:<16} {info['rows']:>10} rows  {info['parts']:>4} parts  {_bytes(info['bytes']):>10}"
                     + (f"  {info['dropped']} dropped" if info["dropped"] else ""))
    if s["writer_dropped"]:
        lines += ["", "dropped by the writer"]
        for t, d in s["writer_dropped"].items():
            lines.append(f"  {t:<16} " + ", ".join(f"{n} rows ({r})" for r, n in d.items()))
    if s["skipped"]:
        lines += ["", "skipped (damaged)"] + [f"  {x}" for x in s["skipped"]]
    return lines
