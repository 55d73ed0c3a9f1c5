"""Our inotify event parser on literal raw event bytes (inotify(7)'s struct inotify_event),
then on what a real inotify fd returns for a folder made in a watched temporary folder."""

from __future__ import annotations

import os
import struct
import sys

from nodetape.recorder import inotify
from nodetape.recorder.inotify import IN


def ev(wd: int, mask: int, cookie: int, name: bytes = b"", pad_to: int = 16) -> bytes:
    """One record as the kernel writes it: the name NUL-terminated, padded with NULs."""
    field = b""
    if name:
        size = -(-(len(name) + 1) // pad_to) * pad_to
        field = name + b"\0" * (size - len(name))
    return struct.pack("=iIII", wd, mask, cookie, len(field)) + field


def test_records_in_order_with_padding_stripped():
    buf = (ev(1, IN.IN_CREATE | IN.IN_ISDIR, 0, b"cg0")
           + ev(1, IN.IN_MODIFY, 0, b"cgroup.events")  # 13 bytes, NUL, 2 of padding
           + ev(2, IN.IN_DELETE | IN.IN_ISDIR, 7, b"a-name-of-exactly-31-bytes-long"))
    assert list(inotify.parse_events(buf)) == [
        (1, IN.IN_CREATE | IN.IN_ISDIR, 0, b"cg0"),
        (1, IN.IN_MODIFY, 0, b"cgroup.events"),
        (2, IN.IN_DELETE | IN.IN_ISDIR, 7, b"a-name-of-exactly-31-bytes-long"),
    ]


def test_literal_bytes_of_one_record():
    # wd 3, IN_MODIFY, cookie 0, len 16, "cpu.max" and nine NULs (little-endian x86/arm64)
    header = bytes.fromhex("03000000" "02000000" "00000000" "10000000")
    if sys.byteorder == "big":
        header = b"".join(header[i:i + 4][::-1] for i in range(0, 16, 4))
    raw = header + b"cpu.max" + b"\0" * 9
    assert list(inotify.parse_events(raw)) == [(3, IN.IN_MODIFY, 0, b"cpu.max")]


def test_queue_overflow_has_no_watch_and_no_name():
    buf = ev(-1, IN.IN_Q_OVERFLOW, 0) + ev(4, IN.IN_IGNORED, 0)
    assert list(inotify.parse_events(buf)) == [(-1, IN.IN_Q_OVERFLOW, 0, b""), (4, IN.IN_IGNORED, 0, b"")]


def test_non_utf8_names_stay_bytes():
    name = b"pod\xff\xfe-\x80"
    (wd, mask, _, got), = inotify.parse_events(ev(9, IN.IN_CREATE | IN.IN_ISDIR, 0, name))
    assert (wd, got) == (9, name)
    assert got.decode(errors="surrogateescape").encode(errors="surrogateescape") == name


def test_a_name_is_cut_at_its_first_nul():
    # bytes after the terminating NUL are padding, whatever they hold
    raw = struct.pack("=iIII", 1, IN.IN_MODIFY, 0, 16) + b"tasks\0garbage!!!"
    assert list(inotify.parse_events(raw)) == [(1, IN.IN_MODIFY, 0, b"tasks")]


def test_a_truncated_record_is_not_returned():
    whole = ev(1, IN.IN_CREATE | IN.IN_ISDIR, 0, b"cg0")
    assert list(inotify.parse_events(whole + whole[:10])) == [(1, IN.IN_CREATE | IN.IN_ISDIR, 0, b"cg0")]
    assert list(inotify.parse_events(whole + whole[:20])) == [(1, IN.IN_CREATE | IN.IN_ISDIR, 0, b"cg0")]
    assert list(inotify.parse_events(b"")) == []


def test_a_real_inotify_fd(tmp_path):
    fd = inotify.open_fd()
    try:
        wd = inotify.add_watch(fd, str(tmp_path), IN.IN_CREATE | IN.IN_DELETE | IN.IN_ONLYDIR)
        assert wd >= 0
        assert inotify.read_events(fd, 4096) is None  # nothing queued: non-blocking
        name = b"c\xffg"
        os.mkdir(os.path.join(os.fsencode(str(tmp_path)), name))
        os.rmdir(os.path.join(os.fsencode(str(tmp_path)), name))
        got = list(inotify.parse_events(inotify.read_events(fd, 4096)))
        assert [(w, m & ~IN.IN_ISDIR, n) for w, m, _, n in got] == [(wd, IN.IN_CREATE, name), (wd, IN.IN_DELETE, name)]
        assert inotify.add_watch(fd, str(tmp_path / "missing"), IN.IN_CREATE) < 0
    finally:
        os.close(fd)
