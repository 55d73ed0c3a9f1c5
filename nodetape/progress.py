"""Live progress while recording, and the summary at the end."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO

from nodetape.core.clock import boottime_ns


class LiveProgress:
    """Called by the recorder about once a second; on a terminal, one live line (rich) redrawn in place.

    Off a terminal it prints nothing live (logs stay clean); the summary still prints.
    """

    def __init__(self, stream: IO[str] = sys.stderr):
        self.stream = stream
        self.tty = stream.isatty()
        self._live = None

    @staticmethod
    def line(rec) -> str:
        """What the live line says about a running recorder."""
        elapsed = (boottime_ns() - rec.start_ns) / 1e9
        top = sorted(((n, r) for n, r in rec.rows.items() if n != "recorder_stats"), key=lambda x: -x[1])[:5]
        dropped = sum(st.source.stats.dropped for st in rec.states if st.source is not None)
        dropped += rec.writer.dropped_rows if rec.writer is not None else 0
        active = sum(1 for st in rec.states if st.status == "active")
        parts = "  ".join(f"{n} {r:,}" for n, r in top) or "waiting for rows"
        return f"● rec {elapsed:6.1f}s  {active} sources  {parts}  drops {dropped:,}"

    def __call__(self, rec) -> None:
        if not self.tty:
            return
        from rich.text import Text

        text = Text(self.line(rec), no_wrap=True, overflow="ellipsis")
        if self._live is None:
            from rich.console import Console
            from rich.live import Live

            # the recorder's own messages go to the same stream: leave stdout and stderr alone
            self._live = Live(text, console=Console(file=self.stream), auto_refresh=False, transient=True,
                              redirect_stdout=False, redirect_stderr=False)
            self._live.start()
        self._live.update(text, refresh=True)

    def finish(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def print_summary(out: Path, manifest: dict, stream: IO[str]) -> None:
    start, end = manifest.get("start_ns"), manifest.get("end_ns")
    secs = (end - start) / 1e9 if start and end else 0
    tables = manifest.get("tables", {})
    total = sum(t["rows"] for t in tables.values())
    size = sum(t["bytes"] for t in tables.values())
    w = stream.write
    w(f"recorded {secs:.1f}s into {out}: {total:,} rows, {size / 1024:.0f} KiB\n")
    for name, t in sorted(tables.items()):
        w(f"  {name:<16} {t['rows']:>10,} rows\n")
    sources = manifest.get("sources", {})
    dropped = {n: s for n, s in sources.items() if s.get("dropped")}
    for n, s in dropped.items():
        w(f"  ! {n}: {s['dropped']:,} events dropped ({s.get('drop_reason')})\n")
    for t, d in ((manifest.get("writer") or {}).get("dropped") or {}).items():
        w(f"  ! {t}: " + ", ".join(f"{n:,} rows dropped by the writer ({r})" for r, n in d.items()) + "\n")
    r = manifest.get("retention")
    if r and r.get("retired_parts"):
        w(f"  retention retired {r['retired_parts']:,} parts ({r.get('retired_rows', 0):,} rows)\n")
    for s in manifest.get("snapshots") or []:
        w(f"  snapshot ({s.get('reason')}): {s.get('error') or s.get('path')}\n")
    unavailable = {n: s for n, s in sources.items() if s.get("status") in ("unavailable", "failed")}
    if unavailable:
        w(f"{len(unavailable)} source(s) did not run (see 'nodetape info {out}'):\n")
        last_needs = None
        for n, s in unavailable.items():
            w(f"  - {n}: {s.get('reason')}\n")
            if s.get("needs") and s["needs"] != last_needs:
                w(f"    needs: {s['needs']}\n")
            last_needs = s.get("needs")
