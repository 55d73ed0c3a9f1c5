"""The runtime source on literal files: OCI specs in state folders, a cgroup folder watched by inotify."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from nodetape.recorder.sources import runtime
from nodetape.recorder.source import RecordContext, SourceUnavailable

SANDBOX = "a" * 64
APP = "b" * 64
UID = "0e5f8a6c-5d8e-4b43-9d0e-7f2f8c1a2b3c"


def containerd_spec(state: Path, cid: str, annotations: dict, ns: str = "k8s.io") -> None:
    d = state / "io.containerd.runtime.v2.task" / ns / cid
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"ociVersion": "1.0.2", "annotations": annotations}))


def sandbox_ann(sid=SANDBOX):
    return {"io.kubernetes.cri.container-type": "sandbox", "io.kubernetes.cri.sandbox-id": sid,
            "io.kubernetes.cri.sandbox-name": "web-1", "io.kubernetes.cri.sandbox-namespace": "shop",
            "io.kubernetes.cri.sandbox-uid": UID}


def app_ann():
    return {**sandbox_ann(), "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.container-name": "app", "io.kubernetes.cri.image-name": "nodetape.local/busybox:1"}


def test_parse_containerd_and_crio():
    got = runtime.parse_spec(json.dumps({"annotations": app_ann()}).encode(), "containerd")
    assert got == {"container_type": "container", "pod_name": "web-1", "pod_namespace": "shop", "pod_uid": UID,
                   "sandbox_id": SANDBOX, "container_name": "app", "image": "nodetape.local/busybox:1"}
    crio = {"io.kubernetes.cri-o.ContainerType": "sandbox", "io.kubernetes.pod.name": "db",
            "io.kubernetes.pod.namespace": "default", "io.kubernetes.pod.uid": UID,
            "io.kubernetes.container.name": "POD", "io.kubernetes.cri-o.SandboxID": SANDBOX}
    got = runtime.parse_spec(json.dumps({"annotations": crio}).encode(), "cri-o")
    assert got["container_type"] == "sandbox" and got["container_name"] == "POD" and got["image"] is None


@pytest.mark.parametrize("data", [b"", b"not json", b"[1, 2]", b"\xff\xfe", b"null"])
def test_parse_rejects_what_is_not_a_spec(data):
    assert runtime.parse_spec(data, "containerd") is None


def test_untrusted_values_are_plain_strings_cut_short():
    ann = {"io.kubernetes.cri.sandbox-name": "x" * 5000, "io.kubernetes.cri.sandbox-uid": {"nested": 1},
           "io.kubernetes.cri.container-name": 7, "io.kubernetes.cri.image-name": ["../../etc/passwd"]}
    got = runtime.parse_spec(json.dumps({"annotations": ann}).encode(), "containerd")
    assert got["pod_name"] == "x" * runtime.MAX_VALUE_CHARS
    assert got["pod_uid"] is None and got["container_name"] is None and got["image"] is None
    assert runtime.parse_spec(json.dumps({"annotations": "no"}).encode(), "containerd")["pod_name"] is None


def test_find_spec_layouts_and_ids(tmp_path):
    ctd, crio = tmp_path / "containerd", tmp_path / "storage"
    containerd_spec(ctd, APP, app_ann())
    d = crio / "overlay-containers" / SANDBOX / "userdata"
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"annotations": {"io.kubernetes.pod.name": "db"}}))
    dirs = [str(ctd), str(crio)]
    assert runtime.find_spec(dirs, APP)[0] == "containerd"
    assert runtime.find_spec(dirs, SANDBOX) == ("cri-o", {**dict.fromkeys(runtime.ANNOTATIONS["cri-o"]), "pod_name": "db"})
    assert runtime.find_spec(dirs, "c" * 64) is None
    for bad in ("..", "../x", ".hidden", "a/b", ""):
        assert runtime.find_spec(dirs, bad) is None


def test_find_spec_does_not_follow_a_symlinked_spec(tmp_path):
    d = tmp_path / "io.containerd.runtime.v2.task" / "k8s.io" / APP
    d.mkdir(parents=True)
    (tmp_path / "elsewhere.json").write_text(json.dumps({"annotations": app_ann()}))
    (d / "config.json").symlink_to(tmp_path / "elsewhere.json")
    assert runtime.find_spec([str(tmp_path)], APP) is None


def test_oversized_spec_is_ignored(tmp_path, monkeypatch):
    containerd_spec(tmp_path, APP, app_ann())
    monkeypatch.setattr(runtime, "MAX_SPEC_BYTES", 10)
    assert runtime.find_spec([str(tmp_path)], APP) is None


def _v2_root(tmp_path: Path) -> Path:
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    return root


def test_source_names_containers_whose_cgroup_appears(tmp_path):
    state = tmp_path / "state"
    containerd_spec(state, SANDBOX, sandbox_ann())
    containerd_spec(state, APP, app_ann())
    root = _v2_root(tmp_path)
    pod = root / "kubepods" / "burstable" / f"pod{UID}"
    (pod / SANDBOX).mkdir(parents=True)  # exists at start: a 'scan' row
    ctx = RecordContext(cgroup_root=root, interval_ns=10_000_000, options={"runtime_state": str(state)})
    src = runtime.RuntimeSource()
    src.probe(ctx)
    rows = [b for _, b in src.start(ctx)]
    try:
        (pod / APP).mkdir()
        (pod / "not-a-cri-container").mkdir()  # no spec anywhere: no row
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and sum(b.num_rows for b in rows) < 2:
            rows += [b for _, b in src.poll(ctx.clock())]
            time.sleep(0.02)
    finally:
        rows += [b for _, b in src.stop()]
    got = [r for b in rows for r in b.to_pylist()]
    assert [(r["container_id"], r["source"], r["container_type"], r["container_name"]) for r in got] == [
        (SANDBOX, "scan", "sandbox", None), (APP, "inotify", "container", "app")]
    assert {r["pod_name"] for r in got} == {"web-1"} and {r["runtime"] for r in got} == {"containerd"}
    assert got[1]["cgroup_path"] == f"/kubepods/burstable/pod{UID}/{APP}"
    assert [r["seq"] for r in got] == [0, 1]


def test_probe_says_which_folders_are_missing(tmp_path):
    ctx = RecordContext(cgroup_root=_v2_root(tmp_path), options={"runtime_state": [str(tmp_path / "nope")]})
    with pytest.raises(SourceUnavailable, match="--runtime-state"):
        runtime.RuntimeSource().probe(ctx)
