"""The manifest text built from cached pieces (tape/manifest_text.py) is json.dumps(to_dict()), always."""

from __future__ import annotations

import json

from nodetape.tape.format import new_manifest
from nodetape.tape.manifest_text import ManifestText


def _manifest():
    return new_manifest(host={"hostname": "n1"}, clock_pair=(10, 1_000_010), cgroup={"version": 2},
                        options={"interval_ns": 1_000_000_000}, schema_version="1")


def _source(events, env=None):
    return {"status": "running", "reason": None, "needs": None, "max_poll_ms": 0.5, "tables": ["psi_samples"],
            "start_ns": 11, "end_ns": None, "events": events, "dropped": 0, "drop_reason": None,
            "environment": env if env is not None else {"psi": "/proc/pressure", "list": [1, 2]}}


def test_the_text_is_json_dumps_of_the_dict_after_every_kind_of_change():
    m, text = _manifest(), ManifestText()

    def same():
        assert text.text(m) == json.dumps(m.to_dict())

    same()  # no sources, no tables
    env = {"psi": "/proc/pressure"}
    m.set_sources({"psi": _source(1, env), "samples": _source(0)})
    same()
    kept = m.sources["samples"]
    m.set_sources({"psi": _source(2, env), "samples": _source(0)})  # one changed, one not
    assert m.sources["samples"] is kept
    same()
    env["psi"] = "/elsewhere"  # changed in place: seen against the checked copy
    m.set_sources({"psi": _source(2, env), "samples": _source(0)})
    assert m.sources["psi"].environment == {"psi": "/elsewhere"}
    same()
    for i in range(4):
        m.add_part("psi_samples", f"part-{i:06d}.parquet", 3, 100 + i, f"{i:064x}")
        m.add_part("cgroup_samples", f"part-{i:06d}.parquet", 2, 50, None)
        same()
    m.replace_parts("psi_samples", ["part-000000.parquet", "part-000001.parquet"], 201,
                    "part-000000-000001.parquet", 150, 6, "f" * 64)
    same()
    m.retire_part("psi_samples", "part-000000-000001.parquet", 1, 6, 150)
    same()
    m.set_drops("psi_samples", {"backpressure": 3})
    same()
    m.set_drops("psi_samples", {"backpressure": 4})
    same()
    m.last_flush_ns = 99
    m.set_sources({"psi": _source(3, env)})  # a source gone
    same()
    m.close(1234)
    same()
    assert json.loads(text.text(m)) == m.to_dict()
