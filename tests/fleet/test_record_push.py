"""`record --push STORE`: sealed parts reach the store in the background, and a store
that is unreachable for a while catches up when it returns (issue 16)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from nodetape.store.reader import open_store
from nodetape.store.storefs import blake2b_local

REPO = Path(__file__).resolve().parents[2]
CGROUPFS = REPO / "fixtures" / "synthetic" / "v2-cgroupfs"


def _record(tape: Path, store: Path, duration: str, cgroupfs: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "nodetape.cli", "record", str(tape), "--duration", duration, "--interval", "200ms",
         "--flush", "300ms", "--cgroup-root", str(cgroupfs), "--sources", "samples,psi", "--push", str(store), "-q"],
        stderr=subprocess.PIPE, text=True)


def _tape_parts(tape: Path) -> dict[str, str]:
    return {f"{p.parent.name}/{p.name}": blake2b_local(p)[0] for p in tape.glob("*/part-*.parquet")}


def _manifest(tape: Path) -> dict:
    try:
        return json.loads((tape / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}


def _wait(cond, what: str, limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    while not cond():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def test_record_push_catches_up_after_the_store_returns(tmp_path):
    cgroupfs = tmp_path / "cgroupfs"
    shutil.copytree(CGROUPFS, cgroupfs, symlinks=True)
    tape = tmp_path / "tape"
    outage = tmp_path / "mnt"
    outage.write_text("not a folder: the store below cannot be reached")  # as root, chmod would not stop us
    store = outage / "store"
    proc = _record(tape, store, "12s", cgroupfs)
    try:
        # the store is unreachable: parts are sealed, pushes fail and are counted
        _wait(lambda: len(_tape_parts(tape)) >= 4 and (_manifest(tape).get("push") or {}).get("failures", 0) >= 1,
              "sealed parts and failed pushes")
        assert (_manifest(tape)["push"]["parts"]) == 0
        outage.unlink()
        outage.mkdir()  # the store is back
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
    m = _manifest(tape)
    assert m["push"]["failures"] >= 1 and m["push"]["pending"] == 0 and m["push"]["expired"] == 0
    local = _tape_parts(tape)
    (stored,) = open_store(store)
    recs = {f"{t}/{name}": rec for t, parts in stored.manifest["store"]["parts"].items() for name, rec in parts.items()}
    assert set(recs) == set(local)  # nothing lost, nothing extra
    for key, digest in local.items():
        assert recs[key]["blake2b"] == digest == blake2b_local(store / recs[key]["file"])[0]
    assert stored.manifest["closed"] is True
    assert sum(len(v) for v in stored.parts.values()) == len(local)


def test_push_counters_in_recorder_stats(tmp_path):
    cgroupfs = tmp_path / "cgroupfs"
    shutil.copytree(CGROUPFS, cgroupfs, symlinks=True)
    tape, store = tmp_path / "tape", tmp_path / "store"
    proc = _record(tape, store, "3s", cgroupfs)
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    from nodetape.tape.reader import connect, open_tapes

    con = connect(open_tapes([tape]))
    rows = con.execute("SELECT max(push_parts), max(push_bytes), max(push_failures), "
                       "count(*) FILTER (WHERE source <> 'recorder' AND push_parts IS NOT NULL) "
                       "FROM recorder_stats").fetchone()
    assert rows[0] > 0 and rows[1] > 0 and rows[2] == 0 and rows[3] == 0
    assert _manifest(tape)["push"]["parts"] == len(_tape_parts(tape))
