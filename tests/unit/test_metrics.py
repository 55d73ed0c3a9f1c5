"""`record --metrics-port`: the recorder's health over HTTP, scraped and parsed with
prometheus-client's own parsers, against the manifest the same recording wrote.

The recording is real (the cgroup, samples and psi sources through the whole loop)
on a copy of a synthetic cgroup2 tree (fixtures/synthetic/), so no root is needed;
the kernel test (tests/kernel/test_metrics_kernel.py) does the same on the live
kernel with a ring-buffer overflow."""

from __future__ import annotations

import json
import re
import shutil
import socket
import threading
import urllib.request
from pathlib import Path

import pytest

from nodetape.cli import run
from nodetape.metrics import METRICS, exported_names, serve
from nodetape.recorder.loop import Recorder, RecordOptions
from nodetape.recorder.source import RecordContext

REPO = Path(__file__).resolve().parents[2]
SYNTH = REPO / "fixtures" / "synthetic" / "v2-systemd"
OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def scrape(port: int, openmetrics: bool = True) -> dict[tuple, float]:
    """/metrics as {(sample name, sorted labels): value}, parsed by prometheus-client."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                 headers={"Accept": OPENMETRICS} if openmetrics else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        text = r.read().decode()
        ctype = r.headers["Content-Type"]
    if openmetrics:
        from prometheus_client.openmetrics.parser import text_string_to_metric_families
        assert ctype.startswith("application/openmetrics-text"), ctype
    else:
        from prometheus_client.parser import text_string_to_metric_families
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def by_label(samples: dict, name: str, label: str) -> dict[str, float]:
    return {dict(k)[label]: v for (n, k), v in samples.items() if n == name}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("metrics")
    root = tmp / "cgroupfs"
    shutil.copytree(SYNTH, root)
    metrics = serve(0, "127.0.0.1")
    port = metrics.server.server_port
    during: list[dict] = []
    seen = threading.Event()

    def progress(rec):
        metrics(rec)
        seen.set()

    rec = Recorder(RecordOptions(out=tmp / "tape", sources=["cgroup", "samples", "psi"],
                                 ctx=RecordContext(cgroup_root=root, interval_ns=200_000_000),
                                 duration_ns=int(2.5e9), tick_ns=50_000_000, progress=progress))

    def scraper():
        if seen.wait(20):
            during.append(scrape(port))
            during.append(scrape(port, openmetrics=False))

    th = threading.Thread(target=scraper)
    th.start()
    manifest = rec.run()
    th.join()
    metrics.finish()
    after = scrape(port)
    yield metrics, port, during, after, manifest
    metrics.server.shutdown()


def test_scraped_while_recording(recorded):
    metrics, port, during, after, manifest = recorded
    assert len(during) == 2
    for samples in during:
        assert samples[("nodetape_recording", ())] == 1
        status = {k: v for k, v in samples.items() if k[0] == "nodetape_source_status" and v == 1}
        assert {dict(k)["source"]: dict(k)["status"] for _, k in status} == \
            {"cgroup": "active", "samples": "active", "psi": "active"}
        assert samples[("nodetape_recorder_rss_bytes", ())] > 0
        assert samples[("nodetape_recorder_cpu_seconds_total", ())] > 0


def test_final_counts_are_the_manifests(recorded):
    metrics, port, during, after, manifest = recorded
    assert after[("nodetape_recording", ())] == 0
    tables = {t: e for t, e in manifest["tables"].items() if e["rows"]}
    assert by_label(after, "nodetape_rows_written_total", "table") == {t: e["rows"] for t, e in tables.items()}
    assert by_label(after, "nodetape_bytes_written_total", "table") == {t: e["bytes"] for t, e in tables.items()}
    assert by_label(after, "nodetape_tape_parts", "table") == {t: len(e["parts"]) for t, e in tables.items()}
    assert after[("nodetape_tape_bytes", ())] == sum(e["bytes"] for e in tables.values())
    srcs = manifest["sources"]
    assert by_label(after, "nodetape_source_events_total", "source") == {n: s["events"] for n, s in srcs.items()}
    drops = {}
    for (n, k), v in after.items():
        if n == "nodetape_source_dropped_total":
            drops[dict(k)["source"]] = drops.get(dict(k)["source"], 0) + v
    assert {n: drops.get(n, 0) for n in srcs} == {n: s["dropped"] for n, s in srcs.items()}
    stopped = {dict(k)["source"] for (n, k), v in after.items() if n == "nodetape_source_status" and v == 1}
    assert stopped == set(srcs) and all(s["status"] == "stopped" for s in srcs.values())
    info = [dict(k) for (n, k) in after if n == "nodetape_recorder_info"]
    assert info[0]["tape"] == str(manifest_path(recorded).parent)
    # the last flush is the manifest's, in Unix seconds (wall = boot + the clock pair's offset)
    flush = after[("nodetape_last_flush_timestamp_seconds", ())]
    want = (manifest["last_flush_ns"] + manifest["clock"]["offset_ns"]) / 1e9
    assert abs(flush - want) < 1.0


def manifest_path(recorded) -> Path:
    metrics, *_ = recorded
    return Path(metrics._rec.writer.path) / "manifest.json"


def test_push_metrics_exist_at_zero_without_push(recorded):
    metrics, port, during, after, manifest = recorded
    for name in ("nodetape_last_push_timestamp_seconds", "nodetape_pushed_parts_total", "nodetape_push_failures_total"):
        assert after[(name, ())] == 0


def test_push_metrics_count_what_record_push_delivered(tmp_path):
    """A real recording with --push into a directory store: the metrics equal the manifest's push counters."""
    root = tmp_path / "cgroupfs"
    shutil.copytree(SYNTH, root)
    metrics = serve(0, "127.0.0.1")
    try:
        rec = Recorder(RecordOptions(out=tmp_path / "tape", sources=["cgroup", "samples"],
                                     ctx=RecordContext(cgroup_root=root, interval_ns=200_000_000),
                                     duration_ns=int(1.5e9), tick_ns=50_000_000, progress=metrics,
                                     flush_interval_ns=500_000_000, push_store=str(tmp_path / "store")))
        manifest = rec.run()
        metrics.finish()
        now = scrape(metrics.server.server_port)
    finally:
        metrics.server.shutdown()
    assert manifest["push"]["parts"] > 0 and manifest["push"]["failures"] == 0
    assert now[("nodetape_pushed_parts_total", ())] == manifest["push"]["parts"]
    assert now[("nodetape_push_failures_total", ())] == 0
    assert now[("nodetape_last_push_timestamp_seconds", ())] > 1e9


def test_every_declared_metric_is_emitted_with_its_help(recorded):
    metrics, port, during, after, manifest = recorded
    names = {n for n, _ in after}
    # all have a sample after a recording but the retention window (no --retain here)
    missing = {m.name for m in METRICS} - {re.sub(r"_(total|info)$", "", n) for n in names}
    assert missing == {"nodetape_tape_retain_seconds"}
    # drop reasons are there at 0 before any drop (rate() then sees the first one)
    assert by_label(after, "nodetape_source_dropped_total", "reason") == {"inotify_overflow": 0, "pending_rows_full": 0}
    writer = {(dict(k)["table"], dict(k)["reason"]) for (n, k) in after if n == "nodetape_writer_dropped_rows_total"}
    assert writer == {(t, r) for t, e in manifest["tables"].items() if e["rows"] for r in ("backpressure", "disk_full")}
    assert names <= exported_names()
    assert all(m.help.strip() and m.name.startswith("nodetape_") for m in METRICS)


def test_port_in_use_is_one_line_exit_2(tmp_path, capsys):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        port = s.getsockname()[1]
        code = run(["record", str(tmp_path / "tape"), "--sources", "psi", "--duration", "1s", "-q",
                    "--metrics-port", str(port)])
    finally:
        s.close()
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"--metrics-port {port}" in err, err
    assert not (tmp_path / "tape").exists()


def test_bad_port_is_exit_2(tmp_path, capsys):
    assert run(["record", str(tmp_path / "t"), "--metrics-port", "70000", "-q"]) == 2
    assert "--metrics-port" in capsys.readouterr().err


def test_record_cli_serves_metrics(tmp_path):
    """The command line itself: `record --metrics-port` on a synthetic tree, scraped mid-recording."""
    import subprocess
    import sys
    import time

    root = tmp_path / "cgroupfs"
    shutil.copytree(SYNTH, root)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "tape"
    p = subprocess.Popen([sys.executable, "-m", "nodetape.cli", "record", str(out), "--cgroup-root", str(root),
                          "--duration", "20s", "--interval", "200ms", "-q", "--metrics-port", str(port)])
    try:
        samples = None
        for _ in range(100):  # until the first snapshot is served (start-up is not timed)
            try:
                samples = scrape(port)
                if ("nodetape_recording", ()) in samples:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert samples and samples[("nodetape_recording", ())] == 1
        assert set(by_label(samples, "nodetape_source_events_total", "source")) == {"cgroup", "samples", "psi"}
    finally:
        p.terminate()
        p.wait(30)
    assert json.loads((out / "manifest.json").read_text())["closed"]
