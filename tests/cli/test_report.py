"""`nodetape report`: the terminal birth certificates and throttle charts, and the
HTML page rendered by a real headless chromium (screenshot pixels checked).

The tape here is hand-written rows (test inputs, not a recording); the report on
real recordings is exercised by tests/kernel/test_queries_kernel.py's tapes."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
import zlib

import pytest
from golden.tapes import MS, S, write_tape
from nodetape.cli import run

POD = "1b2c3d4e-0000-4000-8000-00000000abcd"
CID = "d" * 64
PATH = f"/kubepods/burstable/pod{POD}/{CID}"


@pytest.fixture(scope="module")
def tape(tmp_path_factory):
    t0 = 10 * S
    n = 8
    return write_tape(tmp_path_factory.mktemp("r") / "tape", {
        "cgroup_events": {
            "ts_ns": [t0, t0 + MS, t0 + 12 * MS, t0 + 20 * MS],
            "source": ["ebpf", "ebpf", "ebpf", "inotify"],
            "kind": ["created", "created", "attach", "populated"],
            "hierarchy": ["unified", "unified", "unified", "unified"],
            "cgroup_path": [f"/kubepods/burstable/pod{POD}", PATH, PATH, PATH],
            "cgroup_id": [7, 8, 8, 8], "pid": [None, None, 4242, None], "comm": [None, None, "runc:[2:INIT]", None],
            "pod_uid": [POD] * 4, "container_id": [None, CID, CID, CID],
        },
        "processes": {"ts_ns": [t0 + 30 * MS], "source": ["ebpf"], "event": ["exec"], "pid": [4242], "tgid": [4242],
                      "comm": ["sh"], "filename": ["/bin/sh"], "cgroup_id": [8]},
        "cgroup_samples": {
            "ts_ns": [t0 + k * S for k in range(n)], "hierarchy": ["cpu"] * n, "cgroup_path": [PATH] * n,
            "cgroup_id": [80] * n, "cpu_usage_usec": [150_000 * k for k in range(n)],
            "nr_periods": [10 * k for k in range(n)], "nr_throttled": [10 * k - (k > 4) * (k - 4) for k in range(n)],
            "throttled_usec": [85_000 * k for k in range(n)], "cpu_quota_usec": [15_000] * n,
            "cpu_period_usec": [100_000] * n, "pod_uid": [POD] * n, "container_id": [CID] * n,
        },
        "psi_samples": {
            "ts_ns": [t0 + k * S for k in range(n)] * 2, "scope": [PATH] * n + ["system"] * n,
            "resource": ["cpu"] * (2 * n), "some_avg10": [5.0 * k for k in range(n)] * 2,
            "some_total_usec": [200_000 * k for k in range(n)] * 2,
        },
    })


def test_terminal_report_has_birth_certificate_and_throttle_chart(tape, capsys):
    assert run(["report", str(tape)]) == 0
    out = capsys.readouterr().out
    assert f"pod {POD}" in out and f"container {CID[:12]}" in out
    for stage in ("cgroup_created", "process_attached", "exec", "populated"):
        assert stage in out
    assert "pid 4242 exec /bin/sh (comm sh) via ebpf" in out
    assert "Throttling: 1 cgroup(s) throttled" in out
    assert "throttle %  |████▇▇▇|  max 100.0%" in out
    assert "quota 0.15 cores" in out


def test_bad_tape_is_one_line_exit_2(tmp_path, capsys):
    assert run(["report", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "no such tape" in err and err.count("\n") == 1


def test_html_is_self_contained(tape, tmp_path):
    html = tmp_path / "r.html"
    assert run(["report", str(tape), "--html", str(html)]) == 0
    text = html.read_text()
    assert text.count("<svg") >= 4  # cascade, throttle %, cpu ms, system PSI
    for external in ("http://", "https://", "<script", "<link", "src=", "@import", "url("):
        assert external not in text, external


def _png_pixels(data: bytes):
    """(width, height, rows of RGB(A) bytes) of a non-interlaced 8-bit PNG: enough for a screenshot."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w = 8, b"", None
    while pos < len(data):
        (n,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype in (2, 6)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw, stride, rows, prev = zlib.decompress(idat), w * bpp, [], bytearray(w * bpp)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, bpp, rows


def _count(rows, bpp, rgb) -> int:
    needle, n = bytes(rgb), 0
    for row in rows:
        for i in range(0, len(row), bpp):
            if row[i:i + 3] == needle:
                n += 1
    return n


def test_html_renders_charts_in_headless_chromium(tape, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:  # CI installs Debian's chromium; a laptop may not have it
        pytest.skip("needs chromium (apt-get install chromium)")
    html = tmp_path / "r.html"
    assert run(["report", str(tape), "--html", str(html)]) == 0
    shot = tmp_path / "out.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={profile}", f"--screenshot={shot}", "--window-size=1280,1600",
                        html.as_uri()], capture_output=True, timeout=60, check=False,
                       env={**os.environ, "HOME": profile})
    assert shot.exists(), "chromium wrote no screenshot"
    w, h, bpp, rows = _png_pixels(shot.read_bytes())
    assert (w, h) == (1280, 1600)
    # filled shapes in the charts' exact colours: throttle bars, CPU bars, cascade markers
    assert _count(rows, bpp, (0xE1, 0x57, 0x59)) > 5000, "throttle % bars not drawn"
    assert _count(rows, bpp, (0x59, 0xA1, 0x4F)) > 2000, "CPU bars not drawn"
    assert _count(rows, bpp, (0x4E, 0x79, 0xA7)) > 50, "cascade markers / PSI line not drawn"


def test_one_report_opens_and_validates_each_tape_once(tape, monkeypatch, capsys):
    import nodetape.api
    import nodetape.tape.reader as reader

    opened, validated = [], []
    real_open, real_validate = nodetape.api.open_tapes, reader._validate_part
    monkeypatch.setattr(nodetape.api, "open_tapes", lambda paths, **kw: opened.append(paths) or real_open(paths, **kw))
    monkeypatch.setattr(reader, "_validate_part", lambda part, t: validated.append(part) or real_validate(part, t))
    assert run(["report", str(tape)]) == 0
    assert "Birth certificates" in capsys.readouterr().out
    assert len(opened) == 1 and len(validated) == len(set(validated)) > 0
