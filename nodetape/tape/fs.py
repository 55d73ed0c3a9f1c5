"""Small filesystem helpers every tape writer shares: durable, atomic writes."""

from __future__ import annotations

import json
import os
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
    tmp = path.with_name(f".{path.name}.tmp")
    text = json.dumps(data, indent=1, sort_keys=False) + "\n"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with open(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
