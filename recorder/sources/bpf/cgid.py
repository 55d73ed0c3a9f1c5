"""How the syscall programs read the current task's cgroup2 id (slots.h, current_cgid).

bpf_get_current_cgroup_id() is a helper call; the same id is
task->cgroups->dfl_cgrp->kn->id, which a raw tracepoint program can read with
four plain loads from bpf_get_current_task_btf() (the verifier checks them
against the kernel's BTF and the JIT inlines them) when the offsets are known.
The offsets come from the running kernel's BTF (btf.py), never from headers.
Ways are tried in CGID_READS order; one the kernel refuses (an older kernel
without bpf_get_current_task_btf, no BTF) falls back to the next, and the
manifest's source environment records which was used and why others were not.
"""

from __future__ import annotations

import os
from pathlib import Path

from .btf import member_offset

CGID_READS = ("task_btf", "probe_read", "helper")
CHAIN = (("task_struct", "cgroups", "OFF_TASK_CGROUPS"), ("css_set", "dfl_cgrp", "OFF_CSS_SET_DFL_CGRP"),
         ("cgroup", "kn", "OFF_CGROUP_KN"), ("kernfs_node", "id", "OFF_KERNFS_NODE_ID"))


def chain_offsets() -> dict[str, int] | None:
    """The -D names of the chain's member offsets; None when the kernel's BTF lacks one."""
    out = {}
    for struct_name, member, flag in CHAIN:
        off = member_offset(struct_name, member)
        if off is None:
            return None
        out[flag] = off
    return out


def cgid_flags(read: str) -> list[str]:
    """cflags for one way of reading the id; ValueError when its offsets are not resolvable."""
    if read == "helper":
        return []
    offs = chain_offsets()
    if offs is None:
        raise ValueError("the kernel's BTF (/sys/kernel/btf/vmlinux) does not give task->cgroups->dfl_cgrp->kn->id")
    macro = {"task_btf": "-DCGID_TASK_BTF", "probe_read": "-DCGID_PROBE_READ"}[read]
    return [macro] + [f"-D{k}={v}" for k, v in offs.items()]


def own_cgroup_id(pid: int, v2_root: Path | None, proc_root: Path = Path("/proc")) -> int | None:
    """The cgroup2 id (directory inode) of process `pid`'s cgroup, None when unknown."""
    if v2_root is None:
        return None
    try:
        for line in (proc_root / str(pid) / "cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return os.stat(str(v2_root) + line[3:].rstrip("/")).st_ino
    except OSError:
        return None
    return None
