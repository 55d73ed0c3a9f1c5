"""`nodetape report`: explain a tape from its named queries.

The terminal gets a birth certificate per container (pod_births) and a throttle
chart per throttled cgroup (throttle_timeline, as unicode sparklines); `--html`
also writes one self-contained page (report_html.py). Everything shown comes
from the named queries, so the report never says more than `nodetape query`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from nodetape.core.durations import format_duration_ns

BARS = "▁▂▃▄▅▆▇█"
MAX_WINDOWS = 90  # a chart wider than a terminal is unreadable: the window grows instead


@dataclass
class Series:
    """One throttled cgroup's windows."""
    cgroup_path: str
    pod_uid: str | None
    container_id: str | None
    host: str
    rows: list[dict] = field(default_factory=list)


@dataclass
class ReportData:
    tapes: list[dict]  # {path, host, start, end, duration_ns}
    window_ns: int
    births: list[dict]
    throttled: list[Series]
    unthrottled: int
    psi_system: list[dict]


def _window_for(duration_ns: int) -> int:
    w = 1_000_000_000
    while duration_ns / w > MAX_WINDOWS:
        w *= 2
    return w


def collect(db) -> ReportData:
    """The report's data from opened tapes (a nodetape.api.Tapes: its tapes and its queries)."""
    infos = []
    for t in db.tapes:
        m = t.manifest
        start, end = m.get("start_ns"), m.get("end_ns") or m.get("last_flush_ns") or m.get("start_ns")
        def wall(boot):  # every clock pair counts: the span survives an NTP step, as `ts` does
            return dt.datetime.fromtimestamp((boot + t.offset_at(boot)) / 1e9, dt.timezone.utc) if boot else None

        infos.append({"path": str(t.path), "host": t.host, "duration_ns": (end or 0) - (start or 0),
                      "start": wall(start), "end": wall(end)})
    window = _window_for(max((i["duration_ns"] for i in infos), default=0))
    wparam = format_duration_ns(window)
    births = db.query("pod_births").to_pylist()
    series: dict[tuple, Series] = {}
    for r in db.query("throttle_timeline", window=wparam).to_pylist():
        key = (r["host"], r["cgroup_path"])
        s = series.get(key) or series.setdefault(key, Series(r["cgroup_path"], r["pod_uid"], r["container_id"], r["host"]))
        s.rows.append(r)
    throttled = [s for s in series.values() if any((r["nr_throttled"] or 0) > 0 for r in s.rows)]
    psi = db.query("psi_timeline", window=wparam, scope="system").to_pylist()
    return ReportData(infos, window, births, throttled, len(series) - len(throttled), psi)


# -- terminal ----------------------------------------------------------------
def sparkline(values: list[float | None], top: float) -> str:
    out = []
    for v in values:
        if v is None:
            out.append(" ")
        else:
            i = 0 if top <= 0 else min(len(BARS) - 1, int(v / top * (len(BARS) - 1) + 0.5))
            out.append(BARS[i] if v > 0 else "·")
    return "".join(out)


def _short(cid: str | None) -> str:
    return cid[:12] if cid else ""


def _group_births(births: list[dict]) -> list[tuple[str, str, list[tuple[str | None, str, list[dict]]]]]:
    """[(host, pod_uid, [(container_id, cgroup_path, stages)])] in query order."""
    pods: dict[tuple, dict] = {}
    for r in births:
        pod = pods.setdefault((r["host"], r["pod_uid"]), {})
        pod.setdefault((r["container_id"], r["cgroup_path"]), []).append(r)
    return [(h, uid, [(cid, path, rows) for (cid, path), rows in conts.items()]) for (h, uid), conts in pods.items()]


def render_text(d: ReportData) -> str:
    out: list[str] = []
    for t in d.tapes:
        span = f"{t['start']:%Y-%m-%d %H:%M:%S} → {t['end']:%H:%M:%S} UTC" if t["start"] and t["end"] else "?"
        out.append(f"tape {t['path']}  host {t['host']}  {span}  ({t['duration_ns'] / 1e9:.1f} s)")
    pods = _group_births(d.births)
    n_cont = sum(1 for _, _, cs in pods for cid, _, _ in cs if cid)
    out += ["", f"Birth certificates: {len(pods)} pod(s), {n_cont} container(s) born during the tape", "=" * 64]
    if not pods:
        out.append("  (no pod or container cgroup was created while recording)")
    multi_host = len(d.tapes) > 1
    for host, uid, conts in pods:
        out.append(f"pod {uid}" + (f"  on {host}" if multi_host else ""))
        for cid, path, rows in conts:
            out.append(f"  {'container ' + _short(cid) if cid else 'pod cgroup'}  {path}")
            for r in rows:
                ts = r["ts"].strftime("%H:%M:%S.%f") if r["ts"] else ""
                out.append(f"    {r['stage']:<20} {'+%.3f ms' % r['offset_ms']:>14}  {ts}  {r['detail']}")
        out.append("")
    win = format_duration_ns(d.window_ns)
    out += [f"Throttling: {len(d.throttled)} cgroup(s) throttled, {d.unthrottled} not (windows of {win})", "=" * 64]
    for s in d.throttled:
        pct = [r["throttle_pct"] for r in s.rows]
        cpu = [r["cpu_usage_ms"] for r in s.rows]
        psi = [r["psi_cpu_some_avg10"] for r in s.rows]
        known = [p for p in pct if p is not None]
        quota = next((r["quota_cores"] for r in reversed(s.rows) if r["quota_cores"] is not None), None)
        who = f"pod {s.pod_uid}" + (f" container {_short(s.container_id)}" if s.container_id else "") if s.pod_uid else ""
        out.append(f"{s.cgroup_path}  {who}".rstrip())
        out.append(f"  quota {quota:g} cores" if quota is not None else "  no quota")
        start = s.rows[0]["window_start"].strftime("%H:%M:%S")
        out.append(f"  throttle %  |{sparkline(pct, 100)}|  max {max(known):.1f}%  mean {sum(known) / len(known):.1f}%  from {start}")
        cpu_known = [c for c in cpu if c is not None]
        if cpu_known:
            out.append(f"  cpu used    |{sparkline(cpu, max(cpu_known))}|  max {max(cpu_known):.1f} ms per {win}")
        if any(p is not None for p in psi):
            out.append(f"  psi cpu     |{sparkline(psi, 100)}|  max some avg10 {max(p for p in psi if p is not None):.1f}%")
        out.append("")
    return "\n".join(out).rstrip() + "\n"
