"""The recorder under what nodes do to it, on the real kernel: SIGKILL at random
moments, a full filesystem (a small tmpfs), a retention window read while it
moves, snapshots on SIGUSR1 and on request, and recording as an unprivileged user."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from kernelutil import have, require, require_root

import nodetape
from nodetape.core.clock import boottime_ns

pytestmark = pytest.mark.kernel

NOBODY = 65534


def _cmd(*args):
    return [sys.executable, "-m", "nodetape.cli", *map(str, args)]


def _cli(*args, **kw):
    return subprocess.run(_cmd(*args), capture_output=True, text=True, timeout=120, **kw)


def _manifest(tape: Path) -> dict | None:
    try:
        return json.loads((tape / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


def _wait(pred, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _require_psi():
    require(Path("/proc/pressure/cpu").exists(), "kernel without PSI (/proc/pressure)")


def test_sigkill_at_random_moments_always_leaves_a_readable_tape(tmp_path):
    """kill -9 at random moments: before the tape exists (then there is none, not half a
    one), and while recording (then it opens, says it was not closed cleanly, and holds every
    row up to about one flush interval before the kill), with eBPF sources in some rounds."""
    _require_psi()
    seed = int(os.environ.get("NODETAPE_KILL_SEED", time.time_ns() % 100_000))
    rng = random.Random(seed)
    flush_ns, interval_ns = 200_000_000, 100_000_000
    for i in range(8):
        tape = tmp_path / f"tape{i}"
        early = i % 4 == 0  # during start-up, the tape may not exist yet
        sources = "psi,proc" + (",syscalls,lineage" if i % 4 == 3 else "")
        p = subprocess.Popen(_cmd("record", tape, "--sources", sources, "--interval", "100ms",
                                  "--flush", "200ms", "--quiet"))
        try:
            if early:
                delay = rng.uniform(0.0, 0.8)
            else:
                _wait(lambda: (_manifest(tape) or {}).get("sources", {}).get("psi", {}).get("status") == "active",
                      60, "the recorder to start")
                delay = rng.uniform(0.3, 3.0)
            time.sleep(delay)
        finally:
            killed_at = boottime_ns()
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
        ctx = f"seed {seed}, round {i} ({sources}), killed {delay:.2f}s after {'spawn' if early else 'start'}"
        if not tape.exists():
            # killed before the tape existed: it is created atomically, so there is
            # no half tape either
            assert early and not any(tmp_path.glob(f"tape{i}*")), ctx
            continue
        m = _manifest(tape)
        assert m is not None, ctx
        n = nodetape.open([tape]).sql("SELECT count(*) AS n, max(ts_ns) AS last FROM psi_samples").to_pylist()[0]
        info = _cli("info", tape)
        assert info.returncode == 0 and "NOT CLOSED CLEANLY" in info.stdout, (ctx, info.stderr)
        if not early:
            # what was lost is at most what the last flush had not written yet: one flush
            # interval and one sampling interval, plus slack for a loaded machine
            assert n["n"] > 0 and n["last"] >= killed_at - flush_ns - interval_ns - 700_000_000, (ctx, n)


@contextlib.contextmanager
def small_tmpfs(free_bytes: int):
    require_root()
    d = Path(tempfile.mkdtemp(prefix="nt-tmpfs-"))
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", str(d)], capture_output=True,
                       text=True)
    require(r.returncode == 0, f"cannot mount a tmpfs: {r.stderr.strip()}")
    try:
        with open(d / "filler", "wb") as f:
            f.write(b"\0" * (4 * 1024 * 1024 - free_bytes))
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], check=False)
        shutil.rmtree(d, ignore_errors=True)


def _parts_valid(tape: Path) -> int:
    import pyarrow.parquet as pq

    n = 0
    for folder in tape.iterdir():
        if folder.is_dir():
            assert not [f for f in os.listdir(folder) if f.endswith(".tmp")], folder
            for part in folder.glob("part-*.parquet"):
                pq.read_table(part)  # every byte of every part still decodes
                n += 1
    return n


def test_disk_full_drops_raw_first_and_exits_1_with_a_valid_tape():
    _require_psi()
    with small_tmpfs(480 << 10) as d:
        tape = d / "tape"
        r = subprocess.run(_cmd("record", tape, "--sources", "psi,proc", "--interval", "100ms", "--flush", "100ms",
                                "--no-compact", "--quiet"), capture_output=True, text=True, timeout=60)
        assert r.returncode == 1, r.stderr
        assert r.stderr.startswith(f"nodetape: error: disk full writing {tape}"), r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        m = _manifest(tape)
        assert m["disk_full"]["fatal"] and "raw event tables" in m["disk_full"]["action"]
        assert m["stop_reason"].startswith("disk full")
        assert _parts_valid(tape) > 0
        rows = nodetape.open([tape]).sql("SELECT count(*) AS n FROM psi_samples").to_pylist()[0]["n"]
        assert rows > 0
        info = _cli("info", tape)
        assert info.returncode == 0 and "disk full" in info.stdout, info.stderr


def test_flight_recorder_evicts_oldest_parts_when_the_disk_fills():
    _require_psi()
    with small_tmpfs(480 << 10) as d:
        tape = d / "tape"
        p = subprocess.Popen(_cmd("record", tape, "--sources", "psi,proc", "--interval", "100ms", "--flush", "100ms",
                                  "--retain", "1h", "--no-compact", "--quiet"), stderr=subprocess.PIPE, text=True)
        try:
            _wait(lambda: ((_manifest(tape) or {}).get("disk_full") or {}).get("evicted_parts"), 40,
                  "an eviction on the full tmpfs")
            time.sleep(0.5)
        finally:
            p.send_signal(signal.SIGTERM)
            _, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
        m = _manifest(tape)
        assert m["closed"] and not m["disk_full"].get("fatal")
        assert m["retention"]["retired_parts"] >= m["disk_full"]["evicted_parts"] > 0
        assert _parts_valid(tape) > 0
        # oldest gone first: the newest rows are still there
        last = nodetape.open([tape]).sql("SELECT max(ts_ns) AS t FROM psi_samples").to_pylist()[0]["t"]
        assert last >= m["last_flush_ns"] - 1_000_000_000


def test_retention_window_moves_while_a_reader_queries(tmp_path):
    _require_psi()
    tape = tmp_path / "tape"
    p = subprocess.Popen(_cmd("record", tape, "--sources", "psi,proc", "--interval", "100ms", "--flush", "300ms",
                              "--retain", "2s", "--duration", "5s", "--quiet"), stderr=subprocess.PIPE, text=True)
    reads, errors = 0, []
    try:
        _wait(lambda: (tape / "manifest.json").exists(), 30, "the tape")
        while p.poll() is None:
            try:
                nodetape.open([tape]).sql("SELECT count(*), min(ts_ns) FROM psi_samples")
                nodetape.open([tape]).sql("SELECT count(*) FROM processes")
                reads += 1
            except Exception as e:  # noqa: BLE001 - any failure is what this test looks for
                errors.append(repr(e))
            time.sleep(0.05)
    finally:
        if p.poll() is None:
            p.kill()
        _, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert not errors and reads >= 3, errors[:3]  # several reads raced retention (how many depends on load)
    m = _manifest(tape)
    assert m["retention"]["retired_parts"] > 0
    r = nodetape.open([tape]).sql("SELECT min(ts_ns) AS lo, max(ts_ns) AS hi FROM psi_samples").to_pylist()[0]
    # the window is about 2 s: parts go whole, by their newest row (one flush of slack)
    assert r["hi"] - r["lo"] >= 1_500_000_000
    assert r["lo"] >= m["last_flush_ns"] - 2_000_000_000 - 1_000_000_000
    # the manifest names every part on disk from first_part on (retired files
    # still in their grace period at close may remain below it), nothing missing
    t = m["tables"]["psi_samples"]
    on_disk = sorted(f for f in os.listdir(tape / "psi_samples") if int(f[5:11]) >= t["first_part"])
    assert on_disk == t["parts"]


def test_snapshots_on_sigusr1_request_and_trigger_while_recording(tmp_path):
    _require_psi()
    require_root()  # the cgroup source needs to read every cgroup
    tape = tmp_path / "tape"
    p = subprocess.Popen(_cmd("record", tape, "--sources", "psi,proc,cgroup", "--interval", "100ms",
                              "--flush", "300ms", "--snapshot-on", "psi cpu some >= 0"),
                         stderr=subprocess.PIPE, text=True)
    snaps = tmp_path / "snapshots"
    try:
        _wait(lambda: (_manifest(tape) or {}).get("tables", {}).get("psi_samples"), 30, "a first flush")
        # the trigger fires on the first system PSI row (>= 0 always holds), once per cooldown
        _wait(lambda: list(snaps.glob("tape-*-psi-cpu-some-avg10")), 30, "the triggered snapshot")
        p.send_signal(signal.SIGUSR1)
        usr1 = _wait(lambda: list(snaps.glob("tape-*-sigusr1")), 30, "the SIGUSR1 snapshot")[0]
        r = _cli("snapshot", tape, tmp_path / "asked")
        assert r.returncode == 0 and "written by the running recorder" in r.stderr, r.stderr
        time.sleep(0.7)  # recording goes on after the snapshots
    finally:
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    m = _manifest(tape)
    assert [s["reason"] for s in m["snapshots"]] == ["psi-cpu-some-avg10", "sigusr1", "request"]
    assert len(list(snaps.glob("tape-*-psi-cpu-some-avg10"))) == 1
    for snap in (usr1, tmp_path / "asked"):
        sm = _manifest(snap)
        assert sm["closed"] and sm["snapshot"]["of"] == str(tape) and "recorder" not in sm
        assert os.stat(snap).st_mode & 0o777 == 0o700
        n = nodetape.open([snap]).sql("SELECT count(*) AS n, max(ts_ns) AS t FROM psi_samples").to_pylist()[0]
        assert n["n"] > 0
        full = nodetape.open([tape]).sql("SELECT max(ts_ns) AS t FROM psi_samples").to_pylist()[0]["t"]
        assert full > n["t"]  # the tape went on past the snapshot
        assert nodetape.open([snap]).sql("SELECT count(*) AS n FROM cgroup_events").to_pylist()[0]["n"] > 0
    # no recorder now: the snapshot copies the parts on disk
    r = _cli("snapshot", tape, tmp_path / "copied")
    assert r.returncode == 0 and "copied from the parts on disk" in r.stderr, r.stderr
    assert nodetape.open([tmp_path / "copied"]).sql("SELECT count(*) AS n FROM psi_samples").to_pylist()[0]["n"] == \
        nodetape.open([tape]).sql("SELECT count(*) AS n FROM psi_samples").to_pylist()[0]["n"]
    r = _cli("snapshot", tape, tmp_path / "copied")
    assert r.returncode == 2 and "already exists" in r.stderr


def test_record_as_nobody_records_what_it_can(tmp_path):
    _require_psi()
    require_root()
    require(have("setpriv"), "setpriv (util-linux) not installed")
    # the venv and the interpreter must be usable by nobody: check rather than assume
    probe = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                            sys.executable, "-c", "import nodetape.cli"], capture_output=True, text=True)
    require(probe.returncode == 0, f"the venv is not usable by uid {NOBODY}: {probe.stderr.strip()[-200:]}")
    d = Path(tempfile.mkdtemp(prefix="nt-nobody-"))  # tmp_path is root's 0700 folder
    try:
        os.chown(d, NOBODY, NOBODY)
        os.chmod(d, 0o700)
        tape = d / "tape"
        r = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                            *_cmd("record", tape, "--duration", "1200ms", "--interval", "200ms")],
                           capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(d)})
        assert r.returncode == 0, r.stderr
        m = _manifest(tape)
        src = m["sources"]
        assert src["psi"]["status"] == "stopped" and m["tables"]["psi_samples"]["rows"] > 0
        bpf = [n for n in ("syscalls", "lineage", "opens") if n in src]
        assert bpf and all(src[n]["status"] == "unavailable" and src[n]["reason"] and src[n]["needs"] for n in bpf)
        assert "did not run" in r.stderr and "needs:" in r.stderr
        st = os.stat(tape)
        assert st.st_uid == NOBODY and st.st_mode & 0o777 == 0o700
        assert os.stat(tape / "manifest.json").st_mode & 0o777 == 0o600
        assert all(os.stat(f).st_mode & 0o077 == 0 for f in tape.rglob("*"))
        # and it refuses a folder it cannot write with one line, exit 2
        r = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                            *_cmd("record", "/proc/nope/tape", "--duration", "1s", "--sources", "psi")],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and r.stderr.startswith("nodetape: error: "), r.stderr
    finally:
        shutil.rmtree(d, ignore_errors=True)

