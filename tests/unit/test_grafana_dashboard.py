"""deploy/grafana-dashboard.json is built on the exporter's metric names: every PromQL
expression (panel targets and template queries) names only metrics that the
recorder's registry exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from nodetape.metrics import RecorderMetrics, exported_names

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana-dashboard.json"

FUNCTIONS_AND_KEYWORDS = {
    "sum", "min", "max", "avg", "count", "topk", "bottomk", "quantile", "stddev", "stdvar", "group",
    "rate", "irate", "increase", "delta", "idelta", "deriv", "time", "timestamp", "vector", "scalar",
    "abs", "clamp_min", "clamp_max", "label_values", "label_replace", "absent", "changes", "resets",
    "max_over_time", "min_over_time", "avg_over_time", "last_over_time", "histogram_quantile",
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
}


def expressions(dash: dict) -> list[str]:
    out = []

    def walk(panels):
        for p in panels:
            out.extend(t["expr"] for t in p.get("targets", []) if t.get("expr"))
            walk(p.get("panels", []))
    walk(dash["panels"])
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        if v.get("type") == "query":
            out.append(q["query"] if isinstance(q, dict) else q)
    return out


def metric_names(expr: str) -> set[str]:
    """The metric names an expression uses: identifiers that are not functions, keywords,
    label names (inside {...} or by/without (...)), variables, durations or strings."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)      # string literals
    e = re.sub(r"\{[^}]*\}", "", e)                     # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)                    # range selectors
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", e)  # label lists
    e = re.sub(r"\$\{?\w+\}?", "", e)                   # dashboard variables
    e = re.sub(r"label_values\(([^,()]+),[^)]*\)", r"\1", e)  # label_values(metric, label)
    idents = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", e))
    return idents - FUNCTIONS_AND_KEYWORDS


def registry_names() -> set[str]:
    """Sample names of the exporter's registry, from its metric families."""
    m = RecorderMetrics()
    names = set()
    for fam in m.registry.collect():
        names |= {"counter": {fam.name + "_total"}, "gauge": {fam.name}, "info": {fam.name + "_info"}}[fam.type]
    return names


def test_the_regex_finds_metrics_and_nothing_else():
    assert metric_names('sum by (instance, source) (rate(a_total{instance=~"$x", s="b c"}[$__rate_interval]))') == {"a_total"}
    assert metric_names("(time() - m1) and m2 > 0") == {"m1", "m2"}
    assert metric_names("label_values(nodetape_recording, instance)") == {"nodetape_recording"}


def test_registry_names_are_the_declared_ones():
    assert registry_names() <= exported_names()
    assert {n for n in exported_names() if not n.endswith("_created")} == registry_names()


def test_every_expression_names_exported_metrics():
    dash = json.loads(DASHBOARD.read_text())
    exprs = expressions(dash)
    assert len(exprs) >= 15
    exported = registry_names()
    used = set()
    for e in exprs:
        names = metric_names(e)
        assert names, f"no metric in {e!r}"
        assert names <= exported, f"{e!r} names {sorted(names - exported)}, not exported by nodetape.metrics"
        used |= names
    # the dashboard shows every metric the exporter has (but the info metric)
    assert exported - used == {"nodetape_recorder_info"}


def test_dashboard_is_importable_shape():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 30
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}" and p["targets"]


def test_readme_names_every_metric():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = sorted(n for n in registry_names() if f"`{n}`" not in readme)
    assert not missing, f"README's metrics table lacks {missing}"
