"""Run `nodetape record` in a child process while the caller does something.

Used by `nodetape demo` and the fixture script: the recorder runs as it would on a
node (its own process, its own signal handling), and the caller gets a context
manager that returns once every source has started (eBPF compiled) and stops the
recorder cleanly (SIGTERM: flush and close) on exit, also on errors and Ctrl-C.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from nodetape.core.errors import UserError


class BackgroundRecording:
    def __init__(self, out: Path, sources: list[str], *, interval: str = "250ms", flush: str = "1s",
                 extra_args: list[str] | None = None, start_timeout: float = 120):
        self.out = Path(out)
        self.args = [sys.executable, "-m", "nodetape.cli", "record", str(self.out), "--interval", interval,
                     "--flush", flush, "--sources", ",".join(sources), "--quiet", *(extra_args or [])]
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        self.manifest: dict = {}

    def __enter__(self) -> BackgroundRecording:
        # its own session: a Ctrl-C reaches the caller, which stops the recorder in order
        self.proc = subprocess.Popen(self.args, start_new_session=True)
        try:
            self.manifest = self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> dict:
        """The recorder writes source statuses once every source has started."""
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise UserError(f"the recorder exited early (code {self.proc.returncode}); try 'nodetape doctor'")
            try:
                m = json.loads((self.out / "manifest.json").read_text())
                if m.get("sources"):
                    return m
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        raise UserError(f"the recorder did not start within {self.start_timeout:.0f}s")

    @property
    def active(self) -> list[str]:
        return [n for n, s in self.manifest.get("sources", {}).items() if s["status"] == "active"]

    @property
    def unavailable(self) -> dict[str, str]:
        return {n: s["reason"] for n, s in self.manifest.get("sources", {}).items() if s["status"] != "active"}

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def __exit__(self, *exc) -> None:
        self.stop()
