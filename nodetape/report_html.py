"""The HTML report: one self-contained page (inline CSS and SVG, no script, no
external resource) so it opens offline and can be attached to an incident."""

from __future__ import annotations

from html import escape
from pathlib import Path

from nodetape.core.durations import format_duration_ns
from nodetape.core.errors import UserError
from nodetape.report import ReportData, _group_births, _short

STAGE_COLORS = {
    "cgroup_created": "#4e79a7", "process_attached": "#f28e2b", "namespaces_isolated": "#76b7b2",
    "exec": "#e15759", "first_syscalls": "#59a14f", "populated": "#b07aa1",
}
CSS = """
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:14px;margin:16px 0 4px;font-family:monospace;word-break:break-all}
.meta{color:#666} table{border-collapse:collapse;margin:6px 0 12px} td,th{padding:2px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3} td.num{text-align:right;font-variant-numeric:tabular-nums}
.legend span{display:inline-block;margin-right:14px}
.sw{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
svg{display:block;margin:4px 0 10px;background:#fcfcfc;border:1px solid #eee}
svg text{font:11px system-ui,sans-serif;fill:#333} .empty{color:#888;font-style:italic}
"""


def _legend(items: list[tuple[str, str]]) -> str:
    return '<div class="legend">' + "".join(
        f'<span><i class="sw" style="background:{c}"></i>{escape(n)}</span>' for n, c in items) + "</div>"


def _nice_max(v: float) -> float:
    for m in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000):
        if v <= m:
            return float(m)
    return float(v)


def cascade_svg(conts: list[tuple[str | None, str, list[dict]]]) -> str:
    """A Gantt-like chart of one pod: a row per stage, a bar from the cgroup's creation to it."""
    rows = [(cid, r) for cid, _, rs in conts for r in rs]
    t0 = min(r["ts"] for _, r in rows)
    starts = {cid: min(r["ts"] for r in rs) for cid, _, rs in conts}
    # offsets from the pod's first creation, so containers line up under their pod; each
    # bar starts at its own cgroup's creation
    xs = [((r["ts"] - t0).total_seconds() * 1000, (starts[cid] - t0).total_seconds() * 1000) for cid, r in rows]
    top = _nice_max(max([x for x, _ in xs] + [1.0]))
    label_w, width, row_h = 330, 1100, 20
    plot_w = width - label_w - 90
    h = row_h * len(rows) + 40
    parts = [f'<svg width="{width}" height="{h}" viewBox="0 0 {width} {h}" role="img">']
    for i in range(6):
        x = label_w + plot_w * i / 5
        parts.append(f'<line x1="{x:.1f}" y1="10" x2="{x:.1f}" y2="{h - 24}" stroke="#e4e4e4"/>')
        parts.append(f'<text x="{x:.1f}" y="{h - 8}" text-anchor="middle">{top * i / 5:g} ms</text>')
    for i, ((cid, r), (x_ms, start_ms)) in enumerate(zip(rows, xs)):
        y = 12 + i * row_h
        who = f"container {_short(cid)}" if cid else "pod cgroup"
        color = STAGE_COLORS.get(r["stage"], "#999")
        x0 = label_w + plot_w * start_ms / top
        x1 = label_w + plot_w * x_ms / top
        parts.append(f'<text x="4" y="{y + 13}">{escape(who)} · {escape(r["stage"])}</text>')
        parts.append(f'<rect x="{x0:.1f}" y="{y + 4}" width="{max(x1 - x0, 0):.1f}" height="10" fill="{color}" opacity="0.35"/>')
        parts.append(f'<circle cx="{x1:.1f}" cy="{y + 9}" r="5" fill="{color}"><title>{escape(r["detail"] or "")}</title></circle>')
        parts.append(f'<text x="{x1 + 8:.1f}" y="{y + 13}">+{r["offset_ms"]:g} ms</text>')
    parts.append("</svg>")
    return "".join(parts)


def timeseries_svg(times: list, series: list[tuple[str, str, list[float | None], bool]], top: float,
                   unit: str, width: int = 1100, height: int = 180) -> str:
    """Bars (bar=True) or lines over windows; None leaves a gap."""
    n = len(times)
    left, right, tpad, bpad = 50, 20, 10, 28
    pw, ph = width - left - right, height - tpad - bpad
    step = pw / max(n, 1)
    parts = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    for i in range(5):
        v = top * i / 4
        y = tpad + ph - ph * i / 4
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#e4e4e4"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{v:g}{escape(unit)}</text>')
    labels = max(1, n // 8)
    for i, t in enumerate(times):
        if i % labels == 0:
            parts.append(f'<text x="{left + step * (i + 0.5):.1f}" y="{height - 8}" text-anchor="middle">{t:%H:%M:%S}</text>')
    for name, color, vals, bar in series:
        pts = []
        for i, v in enumerate(vals):
            if v is None:
                if len(pts) > 1:
                    parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{" ".join(pts)}"/>')
                pts = []
                continue
            h = ph * min(v, top) / top if top else 0
            x = left + step * i
            if bar:
                parts.append(f'<rect x="{x + step * 0.1:.1f}" y="{tpad + ph - h:.1f}" width="{step * 0.8:.1f}" '
                             f'height="{h:.1f}" fill="{color}"><title>{escape(name)} {v:g}</title></rect>')
            else:
                pts.append(f"{x + step / 2:.1f},{tpad + ph - h:.1f}")
        if len(pts) > 1:
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{" ".join(pts)}"/>')
        elif len(pts) == 1:
            x, y = pts[0].split(",")
            parts.append(f'<circle cx="{x}" cy="{y}" r="3" fill="{color}"/>')
    parts.append("</svg>")
    return "".join(parts)


def _births_html(d: ReportData) -> list[str]:
    pods = _group_births(d.births)
    out = [f"<h2>Pod births ({len(pods)})</h2>", _legend(list(STAGE_COLORS.items()))]
    if not pods:
        out.append('<p class="empty">No pod or container cgroup was created while recording.</p>')
    for host, uid, conts in pods:
        out.append(f"<h3>pod {escape(uid)}" + (f" on {escape(host)}" if len(d.tapes) > 1 else "") + "</h3>")
        out.append(cascade_svg(conts))
        out.append("<table><tr><th>cgroup</th><th>stage</th><th>offset</th><th>time (UTC)</th><th>detail</th></tr>")
        for cid, _path, rows in conts:
            for r in rows:
                out.append(f'<tr><td>{escape("container " + _short(cid) if cid else "pod")}</td><td>{escape(r["stage"])}</td>'
                           f'<td class="num">+{r["offset_ms"]:g} ms</td><td>{r["ts"]:%H:%M:%S.%f}</td>'
                           f'<td>{escape(r["detail"] or "")}</td></tr>')
        out.append("</table>")
    return out


def _throttle_html(d: ReportData) -> list[str]:
    win = format_duration_ns(d.window_ns)
    out = [f"<h2>CPU throttling ({len(d.throttled)} throttled cgroups, windows of {win})</h2>"]
    if not d.throttled:
        out.append(f'<p class="empty">No cgroup was throttled ({d.unthrottled} sampled).</p>')
    for s in d.throttled:
        quota = next((r["quota_cores"] for r in reversed(s.rows) if r["quota_cores"] is not None), None)
        who = f"pod {s.pod_uid}" + (f" · container {_short(s.container_id)}" if s.container_id else "") if s.pod_uid else ""
        out.append(f"<h3>{escape(s.cgroup_path)}</h3><div class='meta'>{escape(who)}"
                   f"{' · quota %g cores' % quota if quota is not None else ' · no quota'}</div>")
        times = [r["window_start"] for r in s.rows]
        out.append(_legend([("throttled periods %", "#e15759"), ("PSI cpu some avg10 %", "#4e79a7")]))
        out.append(timeseries_svg(times, [
            ("throttled %", "#e15759", [r["throttle_pct"] for r in s.rows], True),
            ("psi some avg10", "#4e79a7", [r["psi_cpu_some_avg10"] for r in s.rows], False),
        ], 100, "%"))
        cpu = [r["cpu_usage_ms"] for r in s.rows]
        thr = [r["throttled_ms"] for r in s.rows]
        top = _nice_max(max([c for c in cpu + thr if c is not None] + [1.0]))
        out.append(_legend([(f"CPU used (ms per {win})", "#59a14f"), ("throttled (ms)", "#f28e2b")]))
        out.append(timeseries_svg(times, [
            ("cpu ms", "#59a14f", cpu, True),
            ("throttled ms", "#f28e2b", thr, False),
        ], top, ""))
    return out


def _psi_html(d: ReportData) -> list[str]:
    out = ["<h2>System pressure (PSI some %, from the stall totals)</h2>"]
    by_res: dict[str, list[dict]] = {}
    for r in d.psi_system:
        by_res.setdefault(r["resource"], []).append(r)
    if not by_res:
        return [*out, '<p class="empty">No system PSI samples in this tape.</p>']
    colors = {"cpu": "#4e79a7", "memory": "#e15759", "io": "#59a14f", "irq": "#b07aa1"}
    times = sorted({r["window_start"] for r in d.psi_system})
    series = []
    for res, rows in sorted(by_res.items()):
        vals = {r["window_start"]: r["some_pct"] for r in rows}
        series.append((res, colors.get(res, "#999"), [vals.get(t) for t in times], False))
    out.append(_legend([(res, c) for res, c, _, _ in series]))
    top = _nice_max(max([v for _, _, vs, _ in series for v in vs if v is not None] + [1.0]))
    out.append(timeseries_svg(times, series, top, "%"))
    return out


def render_html(d: ReportData) -> str:
    out = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
           "<title>nodetape report</title>", f"<style>{CSS}</style></head><body>", "<h1>nodetape report</h1>"]
    for t in d.tapes:
        span = f"{t['start']:%Y-%m-%d %H:%M:%S} → {t['end']:%H:%M:%S} UTC" if t["start"] and t["end"] else ""
        out.append(f'<div class="meta">tape {escape(t["path"])} · host {escape(t["host"])} · {span} '
                   f'({t["duration_ns"] / 1e9:.1f} s)</div>')
    out += _births_html(d) + _throttle_html(d) + _psi_html(d)
    out.append("</body></html>\n")
    return "\n".join(out)


def write_html(d: ReportData, path: Path) -> None:
    """The page into `path`; a path that cannot be written is bad input naming it."""
    try:
        Path(path).write_text(render_html(d), encoding="utf-8")
    except OSError as e:
        raise UserError(f"--html {path}: cannot write: {e.strerror}") from None
