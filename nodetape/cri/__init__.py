"""A real CRI runtime for tests, fixtures and the demo: a private containerd driven the kubelet's way.

daemon.py starts containerd with its own root, state, socket and CNI bridge;
image.py builds the busybox image it runs; pod.py speaks CRI v1 (stubs.py
compiles the .proto on first use); harness.py ties them together and
cleanup.py removes everything they made. Top layer: nothing below imports it.
"""

from __future__ import annotations

from .daemon import missing
from .harness import CriHarness
from .pod import Call, ContainerSpec, CriError, PodRun, PodSpec

__all__ = ["CriHarness", "PodSpec", "ContainerSpec", "PodRun", "Call", "CriError", "missing"]
