"""Compile, load and attach an eBPF program in a child process; keep only its descriptors.

bcc keeps per program its LLVM context, module and two JIT engines for life, and
loading libbcc maps libLLVM and libclang (relocated pages are anonymous memory):
measured here, with every eBPF source, about 25 MiB of anonymous and 100 MiB
of file-backed RSS in the recorder that nothing used after start-up (docs/idle.md,
"Memory"). So a short-lived child (compile_child.py) does bcc's whole job and
hands back the descriptors; the recorder never loads libbcc. What the kernel runs
is the same: the same program text and cflags through the same bcc.

The descriptors arrive over a SOCK_SEQPACKET socketpair (SCM_RIGHTS). Attachments
do not depend on the child: tracepoints are perf events opened for every task
(pid -1) and raw tracepoints are links, both alive while a descriptor is open.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

from .bpfsys import BpfMap, LoadedProgram

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "compile_child.py")
TIMEOUT_S = 300.0


class LoadFailed(Exception):
    """The child could not compile, load or attach the program; stderr is its words."""

    def __init__(self, error: str, stderr: str):
        super().__init__(error)
        self.stderr = stderr


def load_program(text: str, cflags: list[str], bcc_folder: str) -> LoadedProgram:
    """bcc.BPF(text, cflags) in a child; the loaded program's maps and attachments, here."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    fds: list[int] = []
    try:
        # its own session: a Ctrl-C meant for the recorder (a stop request) must not interrupt a compile
        proc = subprocess.Popen([sys.executable, CHILD, str(child.fileno()), bcc_folder], pass_fds=[child.fileno()],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        child.close()
        parent.sendall(json.dumps({"text": text, "cflags": cflags}).encode())
        data, fds, _, _ = socket.recv_fds(parent, 1 << 20, 4096)
        try:
            _, err = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        stderr = err.decode(errors="replace")
        reply = json.loads(data) if data else {"ok": False, "error": f"the compiler process exited ({proc.returncode})"}
        if not reply.get("ok"):
            raise LoadFailed(reply.get("error", "?"), stderr)
        prog = _assemble(reply, fds)
        fds = []
        return prog
    finally:
        for fd in fds:
            os.close(fd)
        parent.close()
        child.close()


def _assemble(reply: dict, fds: list[int]) -> LoadedProgram:
    """The descriptors in the order compile_child.describe lists them."""
    maps_, tps, raws = reply["maps"], reply["tracepoints"], reply["raw_tracepoints"]
    want = len(maps_) + len(tps) + len(raws) + reply["programs"]
    if len(fds) != want:
        raise LoadFailed(f"expected {want} descriptors from the compiler process, got {len(fds)}", "")
    it = iter(fds)
    maps = {m["name"].encode(): BpfMap(next(it), m["name"], m["type"], m["key_size"], m["value_size"],
                                       m["max_entries"]) for m in maps_}
    tp_fds = {name.encode(): next(it) for name in tps}
    raw_fds = {name.encode(): next(it) for name in raws}
    return LoadedProgram(maps, tp_fds, raw_fds, list(it))
