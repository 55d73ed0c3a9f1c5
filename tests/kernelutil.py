"""Helpers for kernel tests: real cgroups, busy processes, requirements.

`require(cond, why)` skips on a laptop; under NODETAPE_REQUIRE_KERNEL=1 the
conftest hook turns that skip into a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

CGROUP_ROOT = Path("/sys/fs/cgroup")


def require(cond: bool, why: str) -> None:
    if not cond:
        pytest.skip(why)


def require_root() -> None:
    require(os.geteuid() == 0, "needs root")


def v1_controller_dir(controller: str) -> Path | None:
    """The v1 hierarchy directory holding `controller` on this machine, if any."""
    from nodetape.recorder.kernelfs.cgroupfs import detect_layout

    layout = detect_layout(CGROUP_ROOT)
    h = layout.controllers.get(controller)
    return layout.hierarchies.get(h) if h else None


def unique_name(prefix: str = "nt-test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def rmdir_tree(path: Path) -> None:
    """Remove a cgroup directory tree bottom-up (cgroupfs only allows rmdir of empty cgroups)."""
    if not path.exists():
        return
    for dirpath, dirnames, _ in sorted(os.walk(path), key=lambda t: -t[0].count("/")):
        for _ in range(50):
            try:
                os.rmdir(dirpath)
                break
            except FileNotFoundError:
                break
            except OSError:
                # tasks still exiting; move them to the parent and retry
                time.sleep(0.05)


@contextlib.contextmanager
def v1_cgroup(controller: str, relpath: str):
    """Create CONTROLLER-hierarchy/relpath (parents too); remove it afterwards."""
    require_root()
    base = v1_controller_dir(controller)
    require(base is not None, f"no v1 {controller} hierarchy on this machine")
    path = base / relpath.strip("/")
    created = []
    p = base
    for part in relpath.strip("/").split("/"):
        p = p / part
        if not p.exists():
            p.mkdir()
            created.append(p)
    try:
        yield path
    finally:
        for c in reversed(created):
            kill_procs(c)
            rmdir_tree(c)


def kill_procs(cgroup_dir: Path) -> None:
    for dirpath, _, files in os.walk(cgroup_dir):
        if "cgroup.procs" in files:
            try:
                pids = Path(dirpath, "cgroup.procs").read_text().split()
            except OSError:
                continue
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)


def spawn_in_cgroups(argv: list[str], cgroup_dirs: list[Path], **kw) -> subprocess.Popen:
    """Start argv already inside the given cgroups (it moves itself before exec)."""
    procs_files = [str(d / "cgroup.procs") for d in cgroup_dirs]

    def enter():
        for f in procs_files:
            with open(f, "w") as fh:
                fh.write("0")

    return subprocess.Popen(argv, preexec_fn=enter, **kw)


def busy_loop_argv(seconds: float) -> list[str]:
    return [sys.executable, "-c", f"import time\nend=time.time()+{seconds}\nwhile time.time()<end: pass"]


def have(cmd: str) -> bool:
    return shutil.which(cmd) is not None


def record_during(out: Path, sources: list[str], ctx, seconds: float, workload=None,
                  tick_ns: int = 50_000_000) -> dict:
    """Record `sources` for `seconds` on this thread while workload() runs on another; returns the manifest. An exception in the workload
    fails the test once the recorder has stopped and closed its tape."""
    import threading

    from nodetape.recorder.loop import Recorder, RecordOptions

    rec = Recorder(RecordOptions(out=out, sources=sources, ctx=ctx, duration_ns=int(seconds * 1e9), tick_ns=tick_ns))
    errors: list[BaseException] = []

    def run():
        try:
            workload()
        except BaseException as e:  # noqa: BLE001 - surfaced in the test thread
            errors.append(e)

    th = threading.Thread(target=run) if workload else None
    if th:
        th.start()
    manifest = rec.run()
    if th:
        th.join()
    assert not errors, errors
    return manifest
