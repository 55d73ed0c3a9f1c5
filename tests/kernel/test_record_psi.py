"""End to end on the real kernel: record system PSI, read it back through DuckDB; survive SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kernelutil import require

import nodetape

pytestmark = pytest.mark.kernel


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "nodetape.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120, **kw)


def test_record_system_psi_and_query(tmp_path):
    require(Path("/proc/pressure/cpu").exists(), "kernel without PSI (/proc/pressure)")
    tape = tmp_path / "tape"
    r = _cli("record", tape, "--duration", "1500ms", "--interval", "250ms", "--sources", "psi")
    assert r.returncode == 0, r.stderr
    assert "psi_samples" in r.stderr  # the summary
    t = nodetape.open([tape]).sql("SELECT resource, count(*) AS n, min(some_total_usec) >= 0 AS ok FROM psi_samples "
                        "WHERE scope = 'system' GROUP BY resource ORDER BY resource")
    rows = t.to_pylist()
    assert {r["resource"] for r in rows} >= {"cpu", "memory", "io"}
    assert all(r["n"] >= 4 and r["ok"] for r in rows)
    # the totals are the kernel's cumulative counters: they never go down
    mono = nodetape.open([tape]).sql("SELECT bool_and(d >= 0) AS ok FROM (SELECT some_total_usec - lag(some_total_usec) "
                           "OVER (PARTITION BY resource ORDER BY ts_ns) AS d FROM psi_samples WHERE scope='system')")
    assert mono.column("ok")[0].as_py() is not False
    m = json.loads((tape / "manifest.json").read_text())
    assert m["closed"] and m["sources"]["psi"]["status"] == "stopped"
    assert m["host"]["boot_id"] and m["cgroup"]["mode"] in ("v1", "v2", "hybrid")
    info = _cli("info", tape)
    assert info.returncode == 0 and "psi_samples" in info.stdout and "NOT CLOSED" not in info.stdout


def test_sigkill_leaves_a_readable_tape(tmp_path):
    require(Path("/proc/pressure/cpu").exists(), "kernel without PSI (/proc/pressure)")
    tape = tmp_path / "tape"
    p = subprocess.Popen([sys.executable, "-m", "nodetape.cli", "record", str(tape), "--sources", "psi",
                          "--interval", "100ms", "--flush", "200ms", "--quiet"])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                m = json.loads((tape / "manifest.json").read_text())
                if m["tables"].get("psi_samples", {}).get("parts"):
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    info = _cli("info", tape)
    assert info.returncode == 0, info.stderr
    assert "NOT CLOSED CLEANLY" in info.stdout
    r = _cli("sql", tape, "SELECT count(*) AS n FROM psi_samples", "--format", "csv")
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.splitlines()[1]) >= 3


def test_sigterm_flushes_and_closes(tmp_path):
    require(Path("/proc/pressure/cpu").exists(), "kernel without PSI (/proc/pressure)")
    tape = tmp_path / "tape"
    p = subprocess.Popen([sys.executable, "-m", "nodetape.cli", "record", str(tape), "--sources", "psi",
                          "--interval", "100ms", "--flush", "1h", "--quiet"])
    deadline = time.monotonic() + 60
    while not (tape / "manifest.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 0
    m = json.loads((tape / "manifest.json").read_text())
    # nothing was flushed on the 1h schedule: every row came from the SIGTERM flush
    assert m["closed"] and m["tables"]["psi_samples"]["rows"] >= 3
