"""Facts about the recording host that go into the manifest."""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path


def boot_id(proc_root: str = "/proc") -> str | None:
    try:
        return Path(proc_root, "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def host_facts(proc_root: str = "/proc") -> dict:
    u = os.uname()
    return {
        "hostname": socket.gethostname(),
        "kernel_release": u.release,
        "kernel_version": u.version,
        "machine": u.machine,
        "boot_id": boot_id(proc_root),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
