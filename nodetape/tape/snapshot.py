"""Snapshots: the current window of a tape saved as its own closed tape.

A snapshot hard-links the tape's closed parts (they are immutable once renamed
into place, and a link keeps a part alive after retention unlinks it from the
tape), copies when links are impossible (another filesystem), and writes its own
manifest. It is built under a hidden name and renamed into place, so OUT either
does not exist or is a complete tape.

`nodetape snapshot TAPE OUT` asks a running recorder of TAPE (its pid is in the
manifest, checked against the process start time so a reused pid is not
signalled) by dropping a request file into the tape and sending SIGUSR1; the
recorder flushes, writes the snapshot and answers with a result file. With no
recorder running it copies the parts on disk.
"""

from __future__ import annotations

import copy
import errno
import json
import os
import shutil
import signal
import time
import uuid
from pathlib import Path

from nodetape.core.clock import boottime_ns
from nodetape.core.errors import NodetapeError, TapeError, UserError
from nodetape.tape.format import MANIFEST, read_manifest
from nodetape.tape.fs import atomic_write_json, fsync_dir

REQUEST_PREFIX = ".snapshot-request-"
RESULT_PREFIX = ".snapshot-result-"


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES):
            raise
        shutil.copyfile(src, dst)
        os.chmod(dst, 0o600)


def write_snapshot(src: Path, manifest: dict, parts: dict[str, list[Path]], out: Path, *, reason: str) -> Path:
    """Save `parts` of the tape at `src` with a copy of `manifest` as a closed tape at `out`."""
    import pyarrow.parquet as pq

    from nodetape.tape.retention import part_index

    out = Path(out)
    if out.exists():
        raise UserError(f"{out}: snapshot output already exists", str(out))
    out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = out.parent / f".{out.name}.snap-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    tmp.mkdir(mode=0o700)
    try:
        m = copy.deepcopy(manifest)
        m["tables"] = {}
        for table, files in parts.items():
            names, rows, nbytes = [], 0, 0
            for f in files:
                if not names:
                    (tmp / table).mkdir(mode=0o700, exist_ok=True)
                dst = tmp / table / f.name
                try:
                    _link_or_copy(f, dst)
                except FileNotFoundError:
                    continue  # retired by the recorder meanwhile: outside the window now
                names.append(f.name)
                rows += pq.read_metadata(dst).num_rows
                nbytes += dst.stat().st_size
            if names:
                m["tables"][table] = {"rows": rows, "bytes": nbytes, "parts": names,
                                      "first_part": part_index(names[0]) or 0}
            if (tmp / table).exists():
                fsync_dir(tmp / table)
        m["closed"] = True
        m["end_ns"] = manifest.get("end_ns") or manifest.get("last_flush_ns")
        m.pop("recorder", None)
        m.pop("snapshots", None)  # the source tape's history, not this tape's
        m["snapshot"] = {"of": str(src), "taken_ns": boottime_ns(), "reason": reason}
        atomic_write_json(tmp / MANIFEST, m)
        fsync_dir(tmp)
        os.rename(tmp, out)
        fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def default_snapshot_path(tape: Path, folder: Path | None, reason: str) -> Path:
    """snapshots/<tape>-<UTC time>-<reason> beside the tape (or in `folder`)."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f".{time.time_ns() // 1_000_000 % 1000:03d}Z"
    base = folder if folder is not None else tape.parent / "snapshots"
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in reason)
    return base / f"{tape.name}-{stamp}-{safe}"


def process_start_ticks(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (/proc/PID/stat field 22)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
        return int(text[text.rindex(")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def recorder_alive(manifest: dict) -> int | None:
    """The pid of the recorder writing this tape, if it still runs; else None."""
    rec = manifest.get("recorder")
    if manifest.get("closed") or not isinstance(rec, dict):
        return None
    pid, ticks = rec.get("pid"), rec.get("start_ticks")
    if not isinstance(pid, int) or pid <= 0:
        return None
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot_id = None
    if rec.get("boot_id") and boot_id and rec["boot_id"] != boot_id:
        return None
    if ticks is None or process_start_ticks(pid) != ticks:
        return None
    return pid


def request_snapshot(tape: Path, out: Path, pid: int, timeout_s: float = 30.0) -> Path:
    """Ask the recorder `pid` of `tape` for a snapshot into `out`; wait for its answer."""
    rid = uuid.uuid4().hex[:12]
    req = tape / f"{REQUEST_PREFIX}{rid}.json"
    res = tape / f"{RESULT_PREFIX}{rid}.json"
    atomic_write_json(req, {"out": str(out.resolve())})
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if res.exists():
            try:
                answer = json.loads(res.read_text())
            except (OSError, ValueError):
                time.sleep(0.02)
                continue
            res.unlink(missing_ok=True)
            if answer.get("error"):
                raise NodetapeError(f"recorder {pid} could not snapshot {tape}: {answer['error']}")
            return Path(answer["out"])
        time.sleep(0.02)
    req.unlink(missing_ok=True)
    raise NodetapeError(f"recorder {pid} of {tape} did not answer the snapshot request within {timeout_s:.0f}s")


def snapshot_tape(tape: Path, out: Path) -> tuple[Path, str]:
    """Snapshot TAPE into OUT; returns (path, how): 'recorder' when a live recorder did it, else 'copy'."""
    from nodetape.tape.reader import open_tape

    tape, out = Path(tape), Path(out)
    manifest = read_manifest(tape)
    if out.exists():
        raise UserError(f"{out}: snapshot output already exists", str(out))
    pid = recorder_alive(manifest)
    if pid is not None:
        try:
            return request_snapshot(tape, out, pid), "recorder"
        except PermissionError:
            pass  # not ours to signal (or to write into): copy what is on disk
    t = open_tape(tape)
    if not any(t.parts.values()):
        raise TapeError(f"{tape}: no parts on disk yet, nothing to snapshot", str(tape))
    return write_snapshot(tape, t.manifest, t.parts, out, reason="copy"), "copy"
