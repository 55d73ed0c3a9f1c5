"""Snapshots: the current window of a tape saved as its own closed tape.

A snapshot hard-links the tape's closed parts (they are immutable once renamed
into place, and a link keeps a part alive after retention unlinks it from the
tape), copies when links are impossible (another filesystem), and writes its own
manifest. It is built under a hidden name and renamed into place, so OUT either
does not exist or is a complete tape.

`nodetape snapshot TAPE OUT` asks the running recorder of TAPE by dropping a
request file into the tape and sending SIGUSR1; the recorder flushes, writes the
snapshot and answers with a result file. A manifest is untrusted, so the pid it
names is signalled only when everything checks out (`live_recorder`): same boot
id, same process start time, /proc/PID/exe a python, and its command line a
`nodetape record` whose OUT resolves to this very tape. A process that exists but
fails a check is not signalled: exit 2 "no live recorder owns this tape". With no
recorder running (closed tape, recorder gone, another boot) it copies the parts
on disk. Parts keep the checksums the source manifest recorded; parts it has
none for (format 1, or renamed just before a SIGKILL) are hashed as copied.
"""

from __future__ import annotations

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
from nodetape.tape.format import MANIFEST, Manifest, read_manifest
from nodetape.tape.fs import atomic_write_json, fsync_dir
from nodetape.tape.partfile import blake2b_file
from nodetape.tape.retention import part_index

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


def _copy_table(src: Manifest, m: Manifest, table: str, files: list[Path], dst_dir: Path) -> None:
    """Link (or copy) one table's parts into `dst_dir` and name them in `m` with their checksums."""
    import pyarrow.parquet as pq

    entry = src.tables.get(table)
    for f in files:
        if not dst_dir.exists():
            dst_dir.mkdir(mode=0o700)
        dst = dst_dir / f.name
        try:
            _link_or_copy(f, dst)
        except FileNotFoundError:
            continue  # retired by the recorder meanwhile: outside the window now
        size = dst.stat().st_size
        known = entry.sums.get(f.name) if entry else None
        if known is not None and known.bytes == size:
            digest, rows = known.blake2b, known.rows
        else:
            digest, rows = blake2b_file(dst), pq.read_metadata(dst).num_rows
        m.add_part(table, f.name, rows, size, digest)
    if m.tables.get(table) and m.tables[table].parts:
        m.tables[table].first_part = part_index(m.tables[table].parts[0]) or 0
    if dst_dir.exists():
        fsync_dir(dst_dir)


def _made_parents(out: Path) -> list[Path]:
    """Create the missing parents of `out`; returns them, deepest first (removed again on failure)."""
    made = []
    p = out.parent
    while not p.exists():
        made.append(p)
        p = p.parent
    for d in reversed(made):
        d.mkdir(mode=0o700)
    return made


def write_snapshot(src: Path, manifest: Manifest, parts: dict[str, list[Path]], out: Path, *, reason: str) -> Path:
    """Save `parts` of the tape at `src` as a closed tape at `out`; on any failure nothing is left behind."""
    out = Path(out)
    if out.exists():
        raise UserError(f"{out}: snapshot output already exists", str(out))
    made = _made_parents(out)
    tmp = out.parent / f".{out.name}.snap-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        tmp.mkdir(mode=0o700)
        m = Manifest.derived(manifest, start_ns=manifest.start_ns,
                             snapshot={"of": str(src), "taken_ns": boottime_ns(), "reason": reason})
        for table, files in parts.items():
            _copy_table(manifest, m, table, files, tmp / table)
        m.close(manifest.end_ns or manifest.last_flush_ns)
        atomic_write_json(tmp / MANIFEST, m.to_dict())
        fsync_dir(tmp)
        os.rename(tmp, out)
        fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for d in made:
            try:
                d.rmdir()
            except OSError:
                break
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


NO_RECORDER = "no live recorder owns this tape"


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _is_record_of(argv: list[str], cwd: str, tape: Path) -> bool:
    """argv is `PYTHON .../nodetape record ... OUT` or `PYTHON -m nodetape[.cli] record ... OUT`,
    with OUT (resolved from the process's cwd) this very tape."""
    if len(argv) >= 3 and os.path.basename(argv[1]) == "nodetape":
        rest = argv[2:]
    elif len(argv) >= 4 and argv[1] == "-m" and argv[2] in ("nodetape", "nodetape.cli"):
        rest = argv[3:]
    else:
        return False
    if rest[0] != "record":
        return False
    want = tape.resolve()
    return any(a and not a.startswith("-") and Path(os.path.join(cwd, a)).resolve() == want for a in rest[1:])


def live_recorder(tape: Path, manifest: Manifest) -> int | None:
    """The pid of the `nodetape record` writing `tape` now; None when none runs (copy the parts).

    TapeError "no live recorder owns this tape" when the manifest names a running
    process that cannot be shown to be that recorder: it is never signalled.
    """
    rec = manifest.recorder
    if manifest.closed or rec is None:
        return None
    ours = _boot_id()
    if rec.boot_id is not None and ours is not None and rec.boot_id != ours:
        return None  # recorded on another boot: that recorder is gone
    ticks = process_start_ticks(rec.pid)
    if ticks is None or (rec.start_ticks is not None and ticks != rec.start_ticks):
        return None  # no such process now (the pid, if reused, started later)
    where = str(tape / MANIFEST)
    try:
        exe = os.path.basename(os.readlink(f"/proc/{rec.pid}/exe"))
        with open(f"/proc/{rec.pid}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read(1 << 20).split(b"\0")]
        cwd = os.readlink(f"/proc/{rec.pid}/cwd")
    except PermissionError:
        return None  # not ours to inspect, so not ours to signal: copy what is on disk
    except OSError:
        return None  # it exited meanwhile
    if rec.boot_id is None or rec.start_ticks is None:
        raise TapeError(f"{where}: {NO_RECORDER} (the manifest's recorder lacks a boot id or start time)", where)
    if not exe.startswith("python") or not _is_record_of(argv, cwd, tape):
        raise TapeError(f"{where}: {NO_RECORDER} (pid {rec.pid} is not a `nodetape record` of it)", where)
    return rec.pid


def request_snapshot(tape: Path, out: Path, pid: int, timeout_s: float = 30.0) -> Path:
    """Ask the recorder `pid` of `tape` for a snapshot into `out`; wait for its answer."""
    rid = uuid.uuid4().hex[:12]
    req = tape / f"{REQUEST_PREFIX}{rid}.json"
    res = tape / f"{RESULT_PREFIX}{rid}.json"
    atomic_write_json(req, {"out": str(out.resolve())})
    try:
        os.kill(pid, signal.SIGUSR1)
    except BaseException:
        req.unlink(missing_ok=True)
        raise
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
    pid = live_recorder(tape, manifest)
    if pid is not None:
        try:
            return request_snapshot(tape, out, pid), "recorder"
        except PermissionError:
            pass  # not ours to signal (or to write into): copy what is on disk
    t = open_tape(tape)
    if not any(t.parts.values()):
        raise TapeError(f"{tape}: no parts on disk yet, nothing to snapshot", str(tape))
    return write_snapshot(tape, t.manifest, t.parts, out, reason="copy"), "copy"
