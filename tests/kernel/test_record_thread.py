"""The library records from any thread: Recorder.run() installs no signal handler
(the CLI does), so api.record() on a threading.Thread records the real kernel and
closes its tape, and a recorder is stopped from another thread by request_stop()."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import pytest
from kernelutil import require

from nodetape import api

pytestmark = pytest.mark.kernel

SOURCES = "cgroup,samples,psi"


def _on_thread(fn):
    result: dict = {}

    def run():
        try:
            result["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - surfaced in the test thread
            result["error"] = e

    th = threading.Thread(target=run, name="nodetape-test-recorder")
    th.start()
    return th, result


def test_api_record_on_a_thread(tmp_path):
    require(Path("/proc/pressure/cpu").exists(), "kernel without PSI (/proc/pressure)")
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    tape = tmp_path / "tape"
    th, result = _on_thread(lambda: api.record(tape, duration_ns=1_200_000_000, interval_ns=200_000_000,
                                               sources=SOURCES))
    th.join(120)
    assert not th.is_alive()
    assert "error" not in result, result.get("error")
    manifest = result["value"]
    assert manifest["closed"]
    for name in SOURCES.split(","):
        assert manifest["sources"][name]["status"] == "stopped", manifest["sources"][name]
    assert json.loads((tape / "manifest.json").read_text())["closed"]
    n = api.open(tape).sql("SELECT count(*) AS n FROM psi_samples WHERE scope = 'system'").column("n")[0].as_py()
    assert n >= 3  # every interval's system PSI, read from the kernel
    assert {s: signal.getsignal(s) for s in handlers} == handlers  # nothing installed, nothing changed


def test_a_recorder_on_a_thread_stops_on_request(tmp_path):
    require(Path("/proc/pressure/cpu").exists(), "kernel without PSI (/proc/pressure)")
    tape = tmp_path / "tape"
    rec = api.recorder(tape, interval_ns=200_000_000, sources="psi")  # no duration: until stopped
    th, result = _on_thread(rec.run)
    for _ in range(1200):  # the recorder writes source statuses once every source has started
        if (tape / "manifest.json").exists() and json.loads((tape / "manifest.json").read_text()).get("sources"):
            break
        assert th.is_alive(), result
        time.sleep(0.05)
    rec.request_stop()
    th.join(60)
    assert not th.is_alive()
    assert "error" not in result, result.get("error")
    assert result["value"]["closed"] and result["value"]["sources"]["psi"]["status"] == "stopped"
