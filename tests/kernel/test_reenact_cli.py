"""The re-enactment round trip through the CLI, the way the README tells it:

    nodetape replay TAPE --into DIR --prepare
    nodetape record OUT --cgroup-root DIR &
    nodetape replay TAPE --into DIR --speed 2

on the checked-in burst fixture (six real containers in three QoS classes): the
second tape names the same containers, created and removed in the same order.
The watcher is real inotify on a real folder; no root is needed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nodetape.api import open as open_tapes

pytestmark = pytest.mark.kernel
TAPE = Path(__file__).resolve().parents[2] / "fixtures" / "tapes" / "container-burst"


def nodetape(*args) -> list[str]:
    return [sys.executable, "-m", "nodetape.cli", *map(str, args)]


def wait_active(tape: Path, sources: list[str], proc: subprocess.Popen, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            m = json.loads((tape / "manifest.json").read_text())
            if all(m["sources"].get(s, {}).get("status") == "active" for s in sources):
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"the recorder of {tape} did not start its sources")


def lifecycle(tape: Path) -> list[tuple[str, str]]:
    rows = open_tapes(tape).sql("SELECT kind, container_id FROM cgroup_events WHERE source = 'inotify' AND hierarchy = "
                           "'unified' AND kind IN ('created', 'removed') AND container_id IS NOT NULL "
                           "ORDER BY ts_ns, seq").to_pylist()
    return [(r["kind"], r["container_id"]) for r in rows]


def test_prepare_record_replay_round_trip_through_the_cli(tmp_path):
    into, again = tmp_path / "cgroupfs", tmp_path / "again"
    first = lifecycle(TAPE)
    assert len({c for _, c in first}) == 6 and len(first) == 12

    prep = subprocess.run(nodetape("replay", TAPE, "--into", into, "--prepare"), capture_output=True, text=True)
    assert prep.returncode == 0 and "ready in" in prep.stderr, prep.stderr
    # no --sources: a folder that is not /sys/fs/cgroup records the cgroup sources only
    rec = subprocess.Popen(nodetape("record", again, "--cgroup-root", into, "--interval", "250ms", "--duration", "60s"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_active(again, ["cgroup", "samples", "psi"], rec)
        rep = subprocess.run(nodetape("replay", TAPE, "--into", into, "--speed", "2"), capture_output=True,
                             text=True, timeout=60)
        assert rep.returncode == 0, rep.stderr
        time.sleep(0.5)  # the recorder's next polls
    finally:
        rec.send_signal(signal.SIGINT)
        _, err = rec.communicate(timeout=30)
    assert rec.returncode == 0, err
    assert "recording cgroup,samples,psi" in err
    m = json.loads((again / "manifest.json").read_text())
    assert set(m["sources"]) == {"cgroup", "samples", "psi"} and m["closed"]
    assert lifecycle(again) == first
