"""throttle-probe: the moment a CFS run queue is throttled (throttle_cfs_rq).

There is no tracepoint for CFS throttling; the kernel must allow a kprobe or
an fentry program on throttle_cfs_rq. This version records no rows from either
(it says so instead of pretending), so nothing is compiled: each way is probed
cheaply and the source is unavailable with what the kernel answered.

- kprobe: the kernel offers kprobes through the kprobe PMU
  (/sys/bus/event_source/devices/kprobe) or a writable tracefs kprobe_events
  (CONFIG_KPROBE_EVENTS); both are looked at, nothing is attached.
- fentry (a BPF trampoline, BPF_PROG_TYPE_TRACING): the function's BTF id, then
  a two-instruction program (r0 = 0; exit) loaded with one bpf(BPF_PROG_LOAD)
  call naming it; the kernel's errno and verifier log are the answer. No clang:
  bcc compiling a KFUNC_PROBE here cost every default recording a compile only
  to be unavailable.

Throttling is still visible in cgroup_samples (nr_throttled, throttled_usec).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import struct

from nodetape.recorder.source import Batches, RecordContext, SourceUnavailable
from nodetape.recorder.sources.bpf import BpfSource
from nodetape.recorder.sources.bpf import env as bpf_env
from nodetape.recorder.sources.bpf.btf import VMLINUX, forget, vmlinux_btf

FUNC = "throttle_cfs_rq"
KPROBE_PMU = "/sys/bus/event_source/devices/kprobe/type"

# include/uapi/linux/bpf.h (offsets of union bpf_attr checked with offsetof against the 6.1 headers)
_SYS_BPF = {"x86_64": 321, "aarch64": 280}
_BPF_PROG_LOAD, _BPF_PROG_TYPE_TRACING, _BPF_TRACE_FENTRY = 5, 26, 24
_ATTR_SIZE = 120  # up to attach_prog_fd; the kernel zero-fills the rest of its union
_STUB = struct.pack("<BBhi", 0xB7, 0, 0, 0) + struct.pack("<BBhi", 0x95, 0, 0, 0)  # r0 = 0; exit


def kprobe_check(pmu: str = KPROBE_PMU, tracefs_dirs=(bpf_env.TRACEFS, bpf_env.DEBUGFS_TRACING)) -> str:
    """What the kernel offers for a kprobe, without attaching one."""
    if os.path.exists(pmu):
        return f"kprobe: the kernel offers the kprobe PMU ({pmu}); this nodetape version records no rows from it"
    for d in tracefs_dirs:
        events = d / "kprobe_events"
        if events.exists():
            if os.access(events, os.W_OK):
                return f"kprobe: the kernel offers {events}; this nodetape version records no rows from it"
            return f"kprobe: {events} is not writable by this user"
    return (f"kprobe: the kernel has no kprobe PMU ({pmu}) and no kprobe_events in tracefs "
            "(built without CONFIG_KPROBE_EVENTS)")


def fentry_load(btf_id: int) -> tuple[int, str]:
    """Load an empty fentry program on BTF function `btf_id`: (0, '') when the kernel permits it,
    else (errno, the verifier's log)."""
    nr = _SYS_BPF.get(platform.machine())
    if nr is None:
        return -1, f"no bpf(2) number known for {platform.machine()}"
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    insns = ctypes.create_string_buffer(_STUB, len(_STUB))
    lic = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(4096)
    attr = ctypes.create_string_buffer(_ATTR_SIZE)
    struct.pack_into("<IIQQIIQ", attr, 0, _BPF_PROG_TYPE_TRACING, len(_STUB) // 8, ctypes.addressof(insns),
                     ctypes.addressof(lic), 1, len(log), ctypes.addressof(log))
    struct.pack_into("16s", attr, 48, b"nt_throttle")
    struct.pack_into("<I", attr, 68, _BPF_TRACE_FENTRY)
    struct.pack_into("<I", attr, 108, btf_id)
    libc.syscall.restype = ctypes.c_long
    fd = libc.syscall(ctypes.c_long(nr), ctypes.c_long(_BPF_PROG_LOAD), attr, ctypes.c_uint(_ATTR_SIZE))
    if fd >= 0:
        os.close(fd)
        return 0, ""
    return ctypes.get_errno(), " ".join(log.value.decode(errors="replace").split())


def fentry_check() -> str:
    """What the kernel says to an fentry program on FUNC (loaded and closed at once)."""
    btf = vmlinux_btf()
    if btf is None:
        return f"fentry: no kernel BTF ({VMLINUX}; CONFIG_DEBUG_INFO_BTF)"
    btf_id = btf.func_id(FUNC)
    forget()  # the id is all we need: not the parsed BTF for the life of the recorder
    if btf_id is None:
        return f"fentry: {FUNC} is not in the kernel's BTF"
    err, log = fentry_load(btf_id)
    if err == 0:
        return "fentry: the kernel loads the program; this nodetape version records no rows from it"
    why = os.strerror(err) if err > 0 else log
    return f"fentry: the kernel refused the program ({why}{'; ' + log[-200:] if log and err > 0 else ''}; euid {os.geteuid()})"


class ThrottleProbeSource(BpfSource):
    name = "throttle-probe"
    tables = ()
    summary = "CFS throttle moments from a kprobe/fentry on throttle_cfs_rq, where the kernel permits it"

    def probe(self, ctx: RecordContext) -> None:
        super().probe(ctx)  # privileges and bcc, as every eBPF source: what recording it would need
        tracefs = bpf_env.tracefs_path()  # kprobe_events lives there
        raise SourceUnavailable(f"cannot trace {FUNC}: {kprobe_check(tracefs_dirs=(tracefs,))}; {fentry_check()}")

    def start(self, ctx: RecordContext) -> Batches:
        self.probe(ctx)
        return []
