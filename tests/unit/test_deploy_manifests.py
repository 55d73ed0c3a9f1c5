"""deploy/: the DaemonSet is a valid Kubernetes object, least-privileged as documented, and the Helm
chart renders it exactly.

Validity: the manifest is decoded into the Kubernetes Python client's own API types (V1DaemonSet) and
encoded back; a misspelled or misplaced field does not survive that round trip, so comparing the two
catches it, and a missing required field fails in the client's validation.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import kubernetes
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CHART = DEPLOY / "helm" / "nodetape"


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _round_trip(obj: dict, kind: str) -> dict:
    client = kubernetes.client.ApiClient()
    model = client.deserialize(json.dumps(obj), kind, "application/json")
    return client.sanitize_for_serialization(model)


def _values(node, path: str):
    for key in path.split("."):
        node = node[key]
    return node


def render_chart(values: dict) -> str:
    """The chart's template with its values: the few Helm forms the template uses, nothing more."""
    text = (CHART / "templates" / "daemonset.yaml").read_text()

    def to_yaml(m: re.Match) -> str:
        block = yaml.safe_dump(_values(values, m.group(1)), default_flow_style=False, sort_keys=False)
        pad = " " * int(m.group(2))
        return "\n" + "".join(pad + line for line in block.splitlines(True)).rstrip("\n")

    text = re.sub(r"\s*\{\{- toYaml \.Values\.([\w.]+) \| nindent (\d+) \}\}", to_yaml, text)
    text = re.sub(r"\{\{ \.Values\.([\w.]+) \| quote \}\}", lambda m: json.dumps(str(_values(values, m.group(1)))), text)
    text = re.sub(r"\{\{ \.Values\.([\w.]+) \}\}", lambda m: str(_values(values, m.group(1))), text)
    assert "{{" not in text, "the test's renderer meets a template form it does not know"
    return text


def test_daemonset_is_a_valid_kubernetes_object():
    ds = _load(DEPLOY / "daemonset.yaml")
    assert _round_trip(ds, "V1DaemonSet") == ds


def test_helm_chart_renders_the_daemonset():
    values = _load(CHART / "values.yaml")
    assert yaml.safe_load(render_chart(values)) == _load(DEPLOY / "daemonset.yaml")
    chart = _load(CHART / "Chart.yaml")
    assert chart["apiVersion"] == "v2" and chart["name"] == "nodetape"


def test_least_privilege_with_a_reason_for_each_capability_and_mount():
    text = (DEPLOY / "daemonset.yaml").read_text()
    ds = yaml.safe_load(text)
    pod = ds["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["capabilities"]["drop"] == ["ALL"] and not sc["privileged"] and sc["readOnlyRootFilesystem"]
    for cap in sc["capabilities"]["add"]:
        assert re.search(rf"^\s+- {cap}\s+# \w", text, re.M), f"capability {cap} has no reason beside it"
    for m in c["volumeMounts"]:
        assert re.search(rf"- name: {m['name']}\s+# \w", text), f"mount {m['name']} has no reason beside it"
    env = {e["name"]: e for e in c["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert "--host=$(NODE_NAME)" in c["args"] and c["args"][0] == "record"
