"""Two real recordings into one fleet store: one pushed live (`record --push`), one pushed
afterwards under another host label; `query STORE pod_births` shows both hosts' births."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest
from kernelutil import CGROUP_ROOT, require, require_root

from nodetape.cli import run
from nodetape.recorder.loop import Recorder, RecordOptions
from nodetape.recorder.source import RecordContext

pytestmark = pytest.mark.kernel

SOURCES = ["cgroup", "samples", "psi", "proc"]


def _record_container(tmp: Path, name: str, push_store: Path | None):
    require_root()
    from nodetape import runc

    require(runc.have_runc(), "needs runc and /bin/busybox (busybox-static)")
    c = runc.Container(tmp / f"bundle-{name}", cpu_quota_us=20_000)
    ctx = RecordContext(cgroup_root=CGROUP_ROOT, interval_ns=250_000_000)
    ready = threading.Event()
    rec = Recorder(RecordOptions(out=tmp / name, sources=SOURCES, ctx=ctx, duration_ns=60_000_000_000,
                                 flush_interval_ns=500_000_000, tick_ns=50_000_000,
                                 progress=lambda r: ready.set(),
                                 push_store=str(push_store) if push_store else None))

    def workload():
        try:
            if ready.wait(50):
                time.sleep(0.3)
                c.start()
                time.sleep(1.5)
        finally:
            c.stop()
            runc.remove_pod_cgroups(CGROUP_ROOT, c.pod_uid)
            time.sleep(0.6)
            rec.request_stop()

    th = threading.Thread(target=workload)
    th.start()
    try:
        manifest = rec.run()
    finally:
        th.join()
    return manifest, c


def test_two_recordings_in_one_store_show_both_hosts(tmp_path, capsys):
    store = tmp_path / "store"
    live, c1 = _record_container(tmp_path, "a", push_store=store)
    assert live["push"]["pending"] == 0 and live["push"]["parts"] > 0, live["push"]
    later, c2 = _record_container(tmp_path, "b", push_store=None)
    assert run(["push", str(tmp_path / "b"), str(store), "--host", "node-b", "-q"]) == 0
    assert run(["query", str(store), "pod_births", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    live_host = live["host"]["hostname"]
    hosts = {(r["host"], r["pod_uid"]) for r in rows if r["stage"] == "cgroup_created"}
    assert (live_host, c1.pod_uid) in hosts and ("node-b", c2.pod_uid) in hosts, hosts
    assert live_host == socket.gethostname()
    assert run(["query", str(store), "pod_births", "--hosts", "node-b", "--format", "json"]) == 0
    assert {r["host"] for r in json.loads(capsys.readouterr().out)} == {"node-b"}
