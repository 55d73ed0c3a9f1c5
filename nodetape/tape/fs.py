"""Small filesystem helpers every tape writer shares: durable, atomic writes, a new tape folder."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_json(path: Path, data: Any) -> None:
    """Write JSON to a temp file, fsync, rename over `path` (mode 0600).

    On any failure (ENOSPC, EIO) the temp file is removed and the old `path`
    is untouched; the error propagates.
    """
    # no indent: json's C encoder only runs without one (the manifest is rewritten at every
    # flush: 0.5 ms indented, 0.08 ms not, for a 17 KB manifest)
    atomic_write_text(path, json.dumps(data, sort_keys=False))


def atomic_write_text(path: Path, text: str) -> None:
    """`text` and a newline, like atomic_write_json (the manifest's text, manifest_text.py):
    bytes through os.write, no text-file object per rewrite."""
    tmp = path.with_name(f".{path.name}.tmp")
    write_file(tmp, (text + "\n").encode())
    try:
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def write_file(path: Path, data, mode: int = 0o600) -> None:
    """Write bytes, fsync; remove the file on any error (ENOSPC leaves no half file)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quietly(path)
        raise
    os.close(fd)


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def create_tape_folder(p: Path, manifest: dict, name: str = "manifest.json") -> None:
    """Create the tape folder `p` with its first manifest, atomically when the parent allows.

    Built under a hidden name beside `p` and renamed into place, so `p` never
    exists without a manifest; FileExistsError if `p` exists and is not an empty folder.
    """
    if p.exists() and (not p.is_dir() or any(p.iterdir())):
        raise FileExistsError(errno.EEXIST, "output exists and is not an empty folder", str(p))
    tmp: Path | None = p.parent / f".{p.name}.new-{os.getpid()}"
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir(mode=0o700)
    except PermissionError:
        # parent not writable (an OUT pre-created in a folder we cannot write): build in place
        tmp = None
    target = tmp or p
    try:
        target.mkdir(parents=True, exist_ok=True, mode=0o700)
        # tapes hold process names, paths and cmdlines: not for other users
        os.chmod(target, 0o700)
        atomic_write_json(target / name, manifest)
        if tmp is not None:
            os.rename(tmp, p)  # also replaces an empty OUT the user made
            fsync_dir(p.parent)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def reserve_space(f: Path, nbytes: int) -> bool:
    """Hold `nbytes` of disk in file `f` (freed on a fatal disk full); False if there is no room."""
    if nbytes <= 0:
        return False
    try:
        fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.posix_fallocate(fd, 0, nbytes)
        finally:
            os.close(fd)
        return True
    except OSError:
        _unlink_quietly(f)
        return False
