"""`record --metrics-port` on the real kernel: /metrics scraped while eBPF sources record,
parsed with prometheus-client's parser. An open() flood overflows the opens source's
ring buffer (as in test_bpf_limits): the lost-events counter says so while the
recording runs, and at the end every source's drops equal the manifest's."""

from __future__ import annotations

import signal
import subprocess
import threading
import time

import pytest
from test_bpf_limits import FLOOD_C
from test_bpf_sources import UNIFIED, requirements

from kernelutil import kill_procs, require, rmdir_tree, unique_name

pytestmark = pytest.mark.kernel


def _scrape(port: int) -> dict[tuple, float]:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def _drops(samples: dict) -> dict[tuple[str, str], float]:
    return {(dict(k)["source"], dict(k)["reason"]): v for (n, k), v in samples.items()
            if n == "nodetape_source_dropped_total"}


def _fresh_scrape(port: int, after_wall: float) -> dict:
    """A scrape of values read from the recorder after `after_wall` (they refresh once a second)."""
    for _ in range(100):
        s = _scrape(port)
        if s.get(("nodetape_metrics_updated_timestamp_seconds", ()), 0) > after_wall:
            return s
        time.sleep(0.1)
    raise AssertionError("the metrics were not refreshed")


def test_ringbuf_overflow_is_in_metrics_and_final_drops_are_the_manifests(tmp_path):
    requirements()
    from nodetape.metrics import serve
    from nodetape.recorder.loop import Recorder, RecordOptions
    from nodetape.recorder.source import RecordContext

    exe, src = tmp_path / "flood", tmp_path / "flood.c"
    src.write_text(FLOOD_C)
    r = subprocess.run(["gcc", "-O2", "-static", "-o", str(exe), str(src)], capture_output=True)
    require(r.returncode == 0, f"gcc -static failed (libc6-dev): {r.stderr.decode()[-200:]}")
    cg = UNIFIED / unique_name("nt-metrics")
    cg.mkdir()
    metrics = serve(0, "127.0.0.1")
    port = metrics.server.server_port
    started, seen, errors = threading.Event(), {}, []
    # a 64 KiB ring and 32 KiB a poll: a flood of opens overflows it (test_bpf_limits)
    opts = {"cgroup_globs": [f"/{cg.name}"], "opens_rate": 0, "opens_ringbuf_pages": 16,
            "opens_max_bytes_per_poll": 32768}

    def progress(rec):
        metrics(rec)
        started.set()

    rec = Recorder(RecordOptions(out=tmp_path / "tape", sources=["opens", "lineage", "psi"],
                                 ctx=RecordContext(interval_ns=250_000_000, options=opts),
                                 duration_ns=60_000_000_000, progress=progress))

    def workload():
        try:
            assert started.wait(30)
            seen["before"] = _fresh_scrape(port, time.time())
            p = subprocess.Popen([str(exe)], stdout=subprocess.PIPE,
                                 preexec_fn=lambda: open(cg / "cgroup.procs", "w").write("0"))
            time.sleep(1.5)
            p.send_signal(signal.SIGTERM)
            p.communicate()
            seen["during"] = _fresh_scrape(port, time.time())
        except BaseException as e:  # surfaced below, after the recorder stopped
            errors.append(e)
        finally:
            rec.request_stop()

    th = threading.Thread(target=workload)
    th.start()
    try:
        manifest = rec.run()
    finally:
        th.join()
        kill_procs(cg)
        rmdir_tree(cg)
    if errors:
        raise errors[0]
    metrics.finish()
    end = _scrape(port)
    metrics.server.shutdown()

    assert seen["before"][("nodetape_recording", ())] == 1
    assert _drops(seen["before"])[("opens", "ringbuf_full")] == 0  # there, at 0, before any drop
    # while recording: the overflow is counted under its source and reason
    assert _drops(seen["during"])[("opens", "ringbuf_full")] > 0
    assert seen["during"][("nodetape_source_status", (("source", "opens"), ("status", "active")))] == 1
    # at the end: per source, the drops summed over reasons are the manifest's
    got: dict[str, float] = {}
    for (source, _), v in _drops(end).items():
        got[source] = got.get(source, 0) + v
    srcs = manifest["sources"]
    assert {n: got.get(n, 0) for n in srcs} == {n: s["dropped"] for n, s in srcs.items()}
    assert got["opens"] >= _drops(seen["during"])[("opens", "ringbuf_full")]
    events = {dict(k)["source"]: v for (n, k), v in end.items() if n == "nodetape_source_events_total"}
    assert events == {n: s["events"] for n, s in srcs.items()}
    assert end[("nodetape_recording", ())] == 0
    written = {dict(k)["table"]: v for (n, k), v in end.items() if n == "nodetape_rows_written_total"}
    assert written == {t: e["rows"] for t, e in manifest["tables"].items() if e["rows"]}
