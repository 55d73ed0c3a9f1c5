"""The recorder keeps no compiler: eBPF programs are compiled by bcc in a child process
(recorder/sources/bpf/loader.py) and the recorder holds only descriptors, so libbcc,
libclang and libLLVM are never mapped in it, while the programs count exactly."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kernelutil import rmdir_tree, unique_name
from test_bpf_sources import UNIFIED, requirements

pytestmark = pytest.mark.kernel

# a fresh interpreter: the test process itself may have imported bcc (other tests, benchmarks)
SCRIPT = r"""
import os, sys, subprocess
from nodetape.recorder.source import RecordContext
from nodetape.recorder.sources.bpf.syscalls import SyscallCountSource

cg = sys.argv[1]
src = SyscallCountSource()
ctx = RecordContext()
src.probe(ctx)
src.start(ctx)
libs = sorted({l.split()[-1].rsplit("/", 1)[-1] for l in open("/proc/self/maps")
               if any(k in l for k in ("libbcc", "libLLVM", "libclang"))})
def enter():
    with open(os.path.join(cg, "cgroup.procs"), "w") as f:
        f.write("0")
subprocess.run(["/bin/true"], preexec_fn=enter, check=True)
out = src.stop()
cid = os.stat(cg).st_ino
n = sum(c for _, b in out for c, i in zip(b.column("count").to_pylist(), b.column("cgroup_id").to_pylist()) if i == cid)
print(repr(libs), "bcc" in sys.modules, n > 0)
"""


def test_the_recorder_maps_no_compiler_and_still_counts():
    requirements()
    cg = UNIFIED / unique_name("nt-nollvm")
    cg.mkdir()
    try:
        r = subprocess.run([sys.executable, "-c", SCRIPT, str(cg)], capture_output=True, text=True, timeout=120)
    finally:
        rmdir_tree(cg)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["[]", "False", "True"], r.stdout
