"""A readable summary of a tape (`nodetape info`)."""

from __future__ import annotations

import datetime as dt

from .durations import format_duration_ns
from .tape_reader import Tape


def wall(tape: Tape, boot_ns: int | None) -> str:
    if boot_ns is None:
        return "-"
    t = dt.datetime.fromtimestamp((boot_ns + tape.offset_ns) / 1e9, tz=dt.timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def summary(tape: Tape) -> dict:
    m = tape.manifest
    end = m.get("end_ns")
    last = end
    if last is None:
        # not closed: the last flush is as far as the tape goes
        last = m.get("last_flush_ns")
    return {
        "path": str(tape.path),
        "host": m.get("host", {}),
        "schema_version": m["schema_version"],
        "nodetape_version": m.get("nodetape_version"),
        "start": wall(tape, m.get("start_ns")),
        "end": wall(tape, last),
        "duration": format_duration_ns(last - m["start_ns"]) if last and m.get("start_ns") else None,
        "closed_cleanly": bool(m.get("closed")),
        "cgroup_mode": m.get("cgroup", {}).get("mode"),
        "sources": m.get("sources", {}),
        "tables": {t: {"rows": len_rows(tape, t), "parts": len(p), "bytes": sum(x.stat().st_size for x in p)}
                   for t, p in tape.parts.items() if p},
    }


def len_rows(tape: Tape, table: str) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(p).num_rows for p in tape.parts[table])


def render(tape: Tape) -> str:
    s = summary(tape)
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
        lines.append("state     NOT CLOSED CLEANLY: the recorder was killed or crashed; "
                     "rows after the last flush were lost")
    lines += ["", "sources"]
    width = max([len(n) for n in s["sources"]] + [6])
    for name, st in s["sources"].items():
        status = st.get("status")
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
        lines.append(f"  {t:<16} {info['rows']:>10} rows  {info['parts']:>4} parts  {_bytes(info['bytes']):>10}")
    return "\n".join(lines) + "\n"
