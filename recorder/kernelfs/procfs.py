"""Pure parsers of /proc files, tested on literal strings."""

from __future__ import annotations

import re
from typing import NamedTuple

NS_TYPES = ("cgroup", "ipc", "mnt", "net", "pid", "pid_for_children", "time", "time_for_children", "user", "uts")


def parse_status(text: str) -> dict[str, str]:
    """/proc/PID/status -> {'Name': 'bash', 'PPid': '1', ...} (values stripped)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key] = value.strip()
    return out


def status_ppid(text: str) -> int | None:
    v = parse_status(text).get("PPid")
    return int(v) if v and v.lstrip("-").isdigit() else None


def status_tgid(text: str) -> int | None:
    v = parse_status(text).get("Tgid")
    return int(v) if v and v.isdigit() else None


def cmdline_argv0(data: bytes) -> str | None:
    """/proc/PID/cmdline is NUL-separated argv; empty for kernel threads and zombies -> None."""
    if not data:
        return None
    argv0 = data.split(b"\0", 1)[0]
    return argv0.decode(errors="replace") if argv0 else None


def comm(data: bytes) -> str | None:
    s = data.rstrip(b"\n").decode(errors="replace")
    return s or None


_NS_LINK = re.compile(r"^([a-z_]+):\[(\d+)\]$")


def ns_inode(link: str) -> int | None:
    """readlink of /proc/PID/ns/TYPE, 'net:[4026531840]' -> 4026531840."""
    m = _NS_LINK.match(link)
    return int(m.group(2)) if m else None


def unescape_octal(s: str) -> str:
    r"""mountinfo escapes space, tab, newline and backslash as \040 \011 \012 \134."""
    if "\\" not in s:
        return s
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


class MountInfo(NamedTuple):
    mount_id: int
    parent_id: int
    major_minor: str
    root: str
    mountpoint: str
    options: str
    fstype: str
    source: str | None
    super_options: str | None


def parse_mountinfo_line(line: str) -> MountInfo | None:
    """One line of /proc/PID/mountinfo (proc(5)); None for a malformed line.

    36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    Optional fields (0 or more) end at the '-' separator.
    """
    parts = line.split(" ")
    try:
        sep = parts.index("-", 6)
    except ValueError:
        return None
    if len(parts) < sep + 2:
        return None
    try:
        mount_id, parent_id = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    source = parts[sep + 2] if len(parts) > sep + 2 else None
    super_opts = parts[sep + 3] if len(parts) > sep + 3 else None
    return MountInfo(
        mount_id, parent_id, parts[2], unescape_octal(parts[3]), unescape_octal(parts[4]), parts[5],
        parts[sep + 1], unescape_octal(source) if source is not None else None, super_opts,
    )


def parse_mountinfo(text: str) -> list[MountInfo]:
    return [m for line in text.splitlines() if line and (m := parse_mountinfo_line(line)) is not None]


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """/proc/PID/cgroup -> {hierarchy controllers ('' for cgroup2, 'cpu,cpuacct', 'name=systemd'): path}."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            out[parts[1]] = parts[2]
    return out


def vmstat_counter(data: bytes, name: bytes) -> int | None:
    """The counter `name` of /proc/vmstat's text (None when the kernel has no such line)."""
    key = name + b" "
    if data.startswith(key):
        i = 0
    else:
        i = data.find(b"\n" + key) + 1
        if i == 0:
            return None
    end = data.find(b"\n", i)
    try:
        return int(data[i + len(key): end if end >= 0 else len(data)])
    except ValueError:
        return None
