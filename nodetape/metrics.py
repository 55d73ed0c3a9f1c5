"""`nodetape record --metrics-port PORT`: the recorder's own health as Prometheus metrics.

The recorder calls its `progress` callback about once a second from its own
thread; `RecorderMetrics` is such a callback. It reads the recorder's public
state there (sources and their stats, the writer and its part ledger) into a
plain snapshot, and the HTTP thread of prometheus-client only ever renders the
latest snapshot: the two threads share nothing else. Values are therefore up to
one second old. The exposition is OpenMetrics when the scraper asks for it
(`Accept: application/openmetrics-text`, as Prometheus does), else the classic
text format.

Every metric is declared in METRICS (name, type, labels, help); docs, the Grafana
dashboard (deploy/grafana-dashboard.json) and its test use exactly these names.
Counters keep the meaning of the manifest's counts: `nodetape_source_dropped_total`
summed over `reason` equals `sources.<name>.dropped` in the manifest.

Pushes to a fleet store (`record --push`) are read from the recorder's pusher with
the rest; without --push, the push metrics exist and read 0.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from dataclasses import dataclass

from nodetape.core.clock import boottime_ns
from nodetape.core.errors import UserError

STATUSES = ("active", "unavailable", "failed", "stopped")


@dataclass(frozen=True)
class Metric:
    name: str  # without the `_total` a counter's samples carry
    type: str  # counter, gauge or info
    labels: tuple[str, ...]
    help: str


METRICS = (
    Metric("nodetape_recorder", "info", ("version", "host", "tape"), "The recording: nodetape version, host and tape folder."),
    Metric("nodetape_recording", "gauge", (), "1 while the recorder runs its loop, 0 once it stopped."),
    Metric("nodetape_recorder_start_timestamp_seconds", "gauge", (), "When the recording started (Unix time)."),
    Metric("nodetape_recorder_cpu_seconds", "counter", (), "CPU time (user + system) the recorder used."),
    Metric("nodetape_recorder_rss_bytes", "gauge", (), "Resident memory of the recorder."),
    Metric("nodetape_metrics_updated_timestamp_seconds", "gauge", (), "When these values were read from the recorder (about once a second)."),
    Metric("nodetape_source_status", "gauge", ("source", "status"), "1 for the source's current status (active, unavailable, failed, stopped), 0 for the others."),
    Metric("nodetape_source_events", "counter", ("source",), "Events the source received (rows or kernel events, as its manifest entry counts them)."),
    Metric("nodetape_source_dropped", "counter", ("source", "reason"), "Events the source lost, by reason (ringbuf_full, rate_limit, map_full, inotify_overflow, pending_rows_full); every reason a source declares is there from the start at 0; summed over reason it equals the manifest's `dropped`."),
    Metric("nodetape_source_lag_seconds", "gauge", ("source",), "How far behind the kernel the source's last poll was, as the source measures it."),
    Metric("nodetape_source_max_poll_seconds", "gauge", ("source",), "The longest single poll of the source so far."),
    Metric("nodetape_rows_written", "counter", ("table",), "Rows written into closed parts, per table."),
    Metric("nodetape_bytes_written", "counter", ("table",), "Bytes of closed parts written, per table."),
    Metric("nodetape_writer_dropped_rows", "counter", ("table", "reason"), "Rows the writer dropped, by reason (backpressure, disk_full; both at 0 from a table's first part)."),
    Metric("nodetape_writer_buffered_bytes", "gauge", (), "Rows held in memory, not yet in a part."),
    Metric("nodetape_writer_early_flushes", "counter", (), "Flushes forced before their time by the memory bound."),
    Metric("nodetape_tape_parts", "gauge", ("table",), "Parts on disk in the tape's window, per table."),
    Metric("nodetape_tape_bytes", "gauge", (), "Bytes of parts on disk (including retired parts in their grace period)."),
    Metric("nodetape_tape_window_seconds", "gauge", (), "Time the tape holds: since the start, or with retention since the newest row of the oldest part kept (a lower bound)."),
    Metric("nodetape_tape_retain_seconds", "gauge", (), "The configured --retain window (absent without one)."),
    Metric("nodetape_retired_parts", "counter", (), "Parts retired by --retain / --max-size."),
    Metric("nodetape_snapshots", "counter", (), "Snapshots saved (SIGUSR1, 'nodetape snapshot', --snapshot-on)."),
    Metric("nodetape_last_flush_timestamp_seconds", "gauge", (), "When rows last reached disk (Unix time)."),
    Metric("nodetape_last_push_timestamp_seconds", "gauge", (), "When parts were last pushed to the fleet store (Unix time); 0 until a push succeeds."),
    Metric("nodetape_pushed_parts", "counter", (), "Parts pushed to the fleet store."),
    Metric("nodetape_push_failures", "counter", (), "Pushes to the fleet store that failed."),
)


def exported_names() -> set[str]:
    """Every sample name the exporter can emit (what a PromQL expression may name)."""
    out = set()
    for m in METRICS:
        out |= {"counter": {f"{m.name}_total", f"{m.name}_created"}, "gauge": {m.name},
                "info": {f"{m.name}_info"}}[m.type]
    return out


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


WRITER_DROP_REASONS = ("backpressure", "disk_full")


def _source_drops(source) -> dict[str, int]:
    """A source's drops by reason, every reason it declares at 0 first (so that rate()
    sees the first drop); a total it cannot split goes under its drop_reason."""
    stats = source.stats
    by = {r: 0 for r in getattr(source, "drop_reasons", ())}
    by.update({r: int(n) for r, n in (getattr(stats, "drops_by_reason", None) or {}).items() if n})
    rest = int(stats.dropped or 0) - sum(by.values())
    if rest > 0:
        key = stats.drop_reason or "unknown"
        by[key] = by.get(key, 0) + rest
    return by


class _PartsSeen:
    """Rows and bytes of parts written, per table: counted as the parts appear in the ledger.

    The ledger forgets retired parts and the manifest's per-table counts go down when
    they retire, so the counters remember the highest part index already counted.
    """

    def __init__(self):
        self.next_index: dict[str, int] = {}
        self.rows: dict[str, int] = {}
        self.bytes: dict[str, int] = {}

    def update(self, ledger) -> None:
        for table, parts in ledger.parts.items():
            first = self.next_index.get(table, 0)
            for p in parts:
                if p.index >= first:
                    self.rows[table] = self.rows.get(table, 0) + p.rows
                    self.bytes[table] = self.bytes.get(table, 0) + p.bytes
                    self.next_index[table] = p.index + 1
            self.rows.setdefault(table, 0)
            self.bytes.setdefault(table, 0)


def _window_seconds(rec, now: int) -> float:
    w = rec.writer
    if not (w.manifest.get("retention") or {}).get("retired_parts"):
        return (now - rec.start_ns) / 1e9
    oldest = w.ledger.oldest()
    return (now - oldest.age_key) / 1e9 if oldest is not None else 0.0


def read_recorder(rec, parts: _PartsSeen, recording: bool) -> dict:
    """One consistent snapshot of the recorder's public state (called on the recorder's thread)."""
    from nodetape.core.version import __version__

    now, wall = boottime_ns(), time.time_ns()
    to_unix = lambda boot_ns: (boot_ns + (wall - now)) / 1e9  # noqa: E731 - boottime -> Unix seconds
    w = rec.writer
    parts.update(w.ledger)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    m = w.manifest
    v: dict[str, list] = {x.name: [] for x in METRICS}
    v["nodetape_recorder"] = [((__version__, str((m.get("host") or {}).get("hostname", "")), str(w.path)), 1)]
    v["nodetape_recording"] = [((), 1 if recording else 0)]
    v["nodetape_recorder_start_timestamp_seconds"] = [((), to_unix(rec.start_ns))]
    v["nodetape_recorder_cpu_seconds"] = [((), ru.ru_utime + ru.ru_stime)]
    rss = _rss_bytes()
    v["nodetape_recorder_rss_bytes"] = [((), rss)] if rss is not None else []
    v["nodetape_metrics_updated_timestamp_seconds"] = [((), wall / 1e9)]
    for st in rec.states:
        v["nodetape_source_status"] += [((st.name, s), 1 if st.status == s else 0) for s in STATUSES]
        stats = st.source.stats if st.source is not None else None
        if stats is None:
            continue
        v["nodetape_source_events"].append(((st.name,), stats.events))
        v["nodetape_source_dropped"] += [((st.name, r), n) for r, n in sorted(_source_drops(st.source).items())]
        v["nodetape_source_lag_seconds"].append(((st.name,), (stats.lag_ns or 0) / 1e9))
        v["nodetape_source_max_poll_seconds"].append(((st.name,), st.max_poll_ns / 1e9))
    for table in sorted(parts.rows):
        v["nodetape_rows_written"].append(((table,), parts.rows[table]))
        v["nodetape_bytes_written"].append(((table,), parts.bytes[table]))
    for table in sorted(set(parts.rows) | set(w.dropped)):
        d = {r: 0 for r in WRITER_DROP_REASONS} | w.dropped.get(table, {})
        v["nodetape_writer_dropped_rows"] += [((table, r), n) for r, n in sorted(d.items())]
    v["nodetape_writer_buffered_bytes"] = [((), w.buffered_bytes)]
    v["nodetape_writer_early_flushes"] = [((), w.early_flushes)]
    v["nodetape_tape_parts"] = [((t,), len(ps)) for t, ps in sorted(w.ledger.parts.items())]
    v["nodetape_tape_bytes"] = [((), w.ledger.tape_bytes)]
    v["nodetape_tape_window_seconds"] = [((), _window_seconds(rec, now))]
    if w.ledger.retain_ns:
        v["nodetape_tape_retain_seconds"] = [((), w.ledger.retain_ns / 1e9)]
    v["nodetape_retired_parts"] = [((), (m.get("retention") or {}).get("retired_parts", 0))]
    v["nodetape_snapshots"] = [((), len(rec.snapshots))]
    if m.get("last_flush_ns"):
        v["nodetape_last_flush_timestamp_seconds"] = [((), to_unix(m["last_flush_ns"]))]
    return v


class RecorderMetrics:
    """A progress callback and a prometheus-client collector over the latest snapshot."""

    def __init__(self):
        from prometheus_client import CollectorRegistry

        self._lock = threading.Lock()
        self._values: dict[str, list] = {}
        self._parts = _PartsSeen()
        self._rec = None
        self._push = {"nodetape_last_push_timestamp_seconds": 0.0, "nodetape_pushed_parts": 0,
                      "nodetape_push_failures": 0}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self.server = None

    # -- feeding ---------------------------------------------------------------
    def __call__(self, rec) -> None:
        """The recorder's once-a-second progress callback."""
        self._rec = rec
        values = read_recorder(rec, self._parts, recording=True)
        with self._lock:
            self._values = values
            self._read_push(rec)

    def _read_push(self, rec) -> None:
        pusher = getattr(rec, "pusher", None)
        if pusher is not None:
            c = pusher.counters
            self._push = {"nodetape_last_push_timestamp_seconds": c.last_push_s, "nodetape_pushed_parts": c.parts,
                          "nodetape_push_failures": c.failures}

    def finish(self) -> None:
        """After the recorder stopped: the final counts (those of the manifest), recording 0."""
        if self._rec is not None and self._rec.writer is not None:
            values = read_recorder(self._rec, self._parts, recording=False)
            with self._lock:
                self._values = values
                self._read_push(self._rec)

    # -- prometheus-client -----------------------------------------------------
    def describe(self):
        return []

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

        with self._lock:
            values = dict(self._values)
            values.update({k: [((), n)] for k, n in self._push.items()})
        kinds = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily}
        for m in METRICS:
            if m.type == "info":
                fam = InfoMetricFamily(m.name, m.help, labels=())
                for labels, _ in values.get(m.name, []):
                    fam.add_metric([], dict(zip(m.labels, labels)))
            else:
                fam = kinds[m.type](m.name, m.help, labels=m.labels)
                for labels, n in values.get(m.name, []):
                    if n is not None:
                        fam.add_metric(list(labels), float(n))
            yield fam


def serve(port: int, addr: str = "127.0.0.1") -> RecorderMetrics:
    """Start serving /metrics on addr:port (a daemon thread); a port in use is a one-line UserError."""
    from prometheus_client import start_http_server

    if not 0 <= port <= 65535:
        raise UserError(f"--metrics-port {port}: not a TCP port (0-65535)")
    metrics = RecorderMetrics()
    try:
        metrics.server, _ = start_http_server(port, addr=addr, registry=metrics.registry)
    except OSError as e:
        raise UserError(f"--metrics-port {port}: cannot listen on {addr}:{port}: {e.strerror or e}") from None
    return metrics


def chain(*callbacks):
    """One progress callback calling each given one (None ones skipped)."""
    cbs = [c for c in callbacks if c is not None]
    if not cbs:
        return None
    if len(cbs) == 1:
        return cbs[0]

    def call(rec) -> None:
        for c in cbs:
            c(rec)
    return call
