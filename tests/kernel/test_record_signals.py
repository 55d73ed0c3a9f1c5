"""`nodetape record` stops cleanly on SIGINT whenever it comes: while the sources start, while
it samples, while it takes a snapshot (SIGUSR1), and in bursts of signals.

A signal handler that took a lock (threading.Event.set) could deadlock the recorder when the
signal arrived while the main thread held that lock inside Event.wait(); the handlers now only
set flags and write to a self-pipe (recorder/control.py). Each recorder here must exit 0 with a
closed tape that `nodetape verify` accepts. The bound on the exit is generous: it detects a hang,
it is no speed assertion.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kernelutil import require, require_root

pytestmark = pytest.mark.kernel

SOURCES = "cgroup,samples,psi,proc"
HANG_S = 90  # a clean exit takes a second or two; only a hang takes this long


def _start(tape: Path, *extra) -> subprocess.Popen:
    require(Path("/proc/pressure/cpu").exists(), "kernel without PSI (/proc/pressure)")
    require_root()  # the cgroup source reads every cgroup
    cmd = [sys.executable, "-m", "nodetape.cli", "record", str(tape), "--sources", SOURCES,
           "--interval", "100ms", "--flush", "300ms", "--snapshot-dir", str(tape.parent / "snaps"), *extra]
    return subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)


def _manifest(tape: Path) -> dict:
    try:
        return json.loads((tape / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}


def _wait(p: subprocess.Popen, pred, what: str) -> None:
    deadline = time.monotonic() + 60
    while not pred():
        assert p.poll() is None, f"the recorder exited before {what}: {p.stderr.read()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def _sampling(tape: Path):
    return lambda: "psi_samples" in _manifest(tape).get("tables", {})


def _finish(p: subprocess.Popen, tape: Path) -> dict:
    try:
        _, err = p.communicate(timeout=HANG_S)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise AssertionError(f"the recorder hung after SIGINT (still running after {HANG_S} s)") from None
    assert p.returncode == 0, err
    assert "Traceback" not in err, err
    m = _manifest(tape)
    assert m.get("closed"), m
    for snap in [tape, *(Path(s["path"]) for s in m.get("snapshots", []) if "error" not in s)]:
        r = subprocess.run([sys.executable, "-m", "nodetape.cli", "verify", str(snap)], capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, (snap, r.stdout, r.stderr)
    return m


def test_sigint_right_after_start(tmp_path):
    """SIGINT as soon as the tape exists: the sources are still starting."""
    tape = tmp_path / "tape"
    p = _start(tape)
    _wait(p, lambda: (tape / "manifest.json").exists(), "the tape")
    p.send_signal(signal.SIGINT)
    _finish(p, tape)


def test_sigint_while_sampling(tmp_path):
    tape = tmp_path / "tape"
    p = _start(tape)
    _wait(p, _sampling(tape), "a first flush")
    time.sleep(0.35)
    p.send_signal(signal.SIGINT)
    m = _finish(p, tape)
    assert m["tables"]["psi_samples"]["rows"] > 0
    assert all(s["status"] == "stopped" for s in m["sources"].values()), m["sources"]


def test_sigint_during_a_snapshot(tmp_path):
    """SIGUSR1 starts a snapshot; SIGINT follows at once and a little later (inside the snapshot or
    just after it): the snapshot finishes, then the recorder stops."""
    for delay in (0.0, 0.002, 0.02):
        tape = tmp_path / f"tape-{delay}"
        p = _start(tape)
        _wait(p, _sampling(tape), "a first flush")
        p.send_signal(signal.SIGUSR1)
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        m = _finish(p, tape)
        for s in m.get("snapshots", []):
            assert s["reason"] == "sigusr1" and "error" not in s, s


def test_bursts_of_signals(tmp_path):
    """Hundreds of SIGUSR1 at random moments of the loop (each one a chance to land inside its
    sleep), then a burst of SIGINT and SIGTERM."""
    tape = tmp_path / "tape"
    p = _start(tape)
    _wait(p, _sampling(tape), "a first flush")
    rng = random.Random(15)
    for _ in range(300):
        p.send_signal(signal.SIGUSR1)
        time.sleep(rng.uniform(0, 0.01))
    assert p.poll() is None, p.stderr.read()
    for sig in [signal.SIGINT] * 5 + [signal.SIGTERM, signal.SIGINT]:
        p.send_signal(sig)
        time.sleep(rng.uniform(0, 0.002))
    m = _finish(p, tape)
    assert any(s["reason"] == "sigusr1" for s in m["snapshots"]), m["snapshots"]
