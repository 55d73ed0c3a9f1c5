"""Shared test plumbing.

Kernel tests (real cgroups, tracefs, bcc, runc) skip on a laptop, but CI sets
NODETAPE_REQUIRE_KERNEL=1 and then every skip is a failure: CI proves the kernel
paths work (no silent skips).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REQUIRE_KERNEL = os.environ.get("NODETAPE_REQUIRE_KERNEL") == "1"
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # kernelutil and friends
sys.path.insert(1, str(REPO))  # bench: kernel tests share its workloads (bench/bench_storm.py)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_KERNEL and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under NODETAPE_REQUIRE_KERNEL=1 (no silent skips in CI): {reason}"


@pytest.fixture
def repo() -> Path:
    return REPO
