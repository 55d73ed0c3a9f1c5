"""Design alternatives for in-kernel syscall counting, measured side by side.

Each variant is a small bcc program attached while the same compiled loop makes
N getppid calls in its own cgroup; the figure is the loop's added CPU time per
call (its user+sys time, where the BPF program runs, minus the loop alone in the
same repeat). Variants interleave within each repeat so that load from other
work on the machine falls on all of them alike.

- empty programs: the cost of the hook itself (raw vs classic tracepoint);
- hash: a shared hash keyed by (cgroup id, nr) with an atomic add (nodetape
  before issue 15, and bcc syscount's layout keyed by nr);
- percpu_nr: a per-CPU array indexed by nr only (no cgroup: the floor);
- cache_shared: a per-CPU one-entry (cgroup id -> slot) cache, then a shared
  array row with an atomic add;
- slots_percpu / slots_shared: the hint + owner check of slots.h, then a
  per-CPU row (no atomic, memory x CPUs) or a shared row with an atomic add
  (nodetape's design).
"""

from __future__ import annotations

import ctypes
import os
import tempfile
import uuid
from pathlib import Path

from .bench_syscalls import GETPPID, UNIFIED, build_loop, workload

HEAD = "#define NR_MAX 512\n#define NR_SLOTS 64\n#define HINT_SIZE 4096\n#define NR_BUCKETS 1\n"
SLOTS_H = (Path(__file__).resolve().parent.parent / "recorder" / "sources" / "bpf" / "slots.h")
KEYED = """struct key_t { u64 cgid; u32 nr; u32 pad; };
BPF_HASH(counts, struct key_t, u64, 65536);
static __always_inline int body(u32 nr) {
    struct key_t k = {}; k.cgid = bpf_get_current_cgroup_id(); k.nr = nr;
    u64 *v = counts.lookup(&k);
    if (v) { __sync_fetch_and_add(v, 1); return 0; }
    u64 one = 1; counts.insert(&k, &one); return 0;
}"""
PERCPU_NR = """BPF_PERCPU_ARRAY(c, u64, NR_MAX);
static __always_inline int body(u32 nr) {
    u64 cgid = bpf_get_current_cgroup_id(); (void)cgid;
    u64 *v = c.lookup(&nr); if (v) *v += 1; return 0;
}"""
CACHE = """struct cache_t { u64 cgid; u32 slot; u32 pad; };
BPF_PERCPU_ARRAY(cache, struct cache_t, 1);
BPF_HASH(slot_of, u64, u32, NR_SLOTS);
BPF_ARRAY(c, u64, NR_SLOTS * NR_MAX);
static __always_inline int body(u32 nr) {
    u64 cgid = bpf_get_current_cgroup_id(); int z = 0; u32 slot;
    struct cache_t *e = cache.lookup(&z); if (!e) return 0;
    if (e->cgid == cgid) slot = e->slot;
    else { u32 *s = slot_of.lookup(&cgid); if (!s) return 0; slot = *s; e->cgid = cgid; e->slot = slot; }
    if (nr >= NR_MAX) return 0;
    u32 i = slot * NR_MAX + nr; u64 *v = c.lookup(&i); if (v) __sync_fetch_and_add(v, 1); return 0;
}"""
SLOTS = """{table}
static __always_inline int body(u32 nr) {{
    u64 cgid = bpf_get_current_cgroup_id(); u32 slot = cgroup_slot(cgid);
    if (slot >= NR_SLOTS || nr >= NR_MAX) return 0;
    u32 i = slot * NR_MAX + nr; u64 *v = c.lookup(&i); if (v) {add}; return 0;
}}"""
EMPTY = "static __always_inline int body(u32 nr) { return 0; }"
RAW = "RAW_TRACEPOINT_PROBE(sys_enter) { return body((u32)ctx->args[1]); }"
CLASSIC = "TRACEPOINT_PROBE(raw_syscalls, sys_enter) { return body((u32)args->id); }"

VARIANTS = {
    "empty_classic": (EMPTY, CLASSIC),
    "empty_raw": (EMPTY, RAW),
    "hash_classic": (KEYED, CLASSIC),
    "hash_raw": (KEYED, RAW),
    "percpu_nr_raw": (PERCPU_NR, RAW),
    "cache_shared_raw": (CACHE, RAW),
    "slots_percpu_raw": (SLOTS.format(table="BPF_PERCPU_ARRAY(c, u64, NR_SLOTS * NR_MAX);", add="*v += 1"), RAW),
    "slots_shared_raw": (SLOTS.format(table="BPF_ARRAY(c, u64, NR_SLOTS * NR_MAX);",
                                      add="__sync_fetch_and_add(v, 1)"), RAW),
    "nodetape_raw": None,  # the source's program as shipped
    "nodetape_no_self_raw": None,  # the same without the own-process check
}


def _nodetape_text(is_self: bool) -> str:
    """The `syscalls` source's own program (common.h, slots.h, syscalls.bpf.c)."""
    d = SLOTS_H.parent
    common = (d / "common.h").read_text()
    if not is_self:
        common = common.replace("== OWN_TGID;", "== OWN_TGID && 0;")
    return common + (d / "slots.h").read_text() + (d / "syscalls.bpf.c").read_text()


NODETAPE_FLAGS = ["-DRAW_TP", f"-DOWN_TGID={os.getpid()}", "-DMAX_KEYS=65536"]


def _load(name: str, cgid: int):
    from nodetape.recorder.sources.bpf import env as bpf_env

    if name.startswith("nodetape"):
        b = bpf_env.load_bpf(HEAD + _nodetape_text("no_self" not in name), NODETAPE_FLAGS)
    else:
        body, probe = VARIANTS[name]
        b = bpf_env.load_bpf(HEAD + (SLOTS_H.read_text() if "slots_" in name else "") + body + "\n" + probe)
    if "slots_" in name or name.startswith("nodetape"):  # the workload's cgroup owns slot 3, as slots.py would have set it
        b[b"slot_owner"][ctypes.c_uint32(3)] = ctypes.c_uint64(cgid)
        b[b"slot_hint"][ctypes.c_uint32(cgid & 4095)] = ctypes.c_uint32(3)
    if name.startswith("cache_"):
        b[b"slot_of"][ctypes.c_uint64(cgid)] = ctypes.c_uint32(3)
    return b


def run(n: int = 3_000_000, repeats: int = 3) -> dict:
    from .common import median_spread

    with tempfile.TemporaryDirectory(prefix="nt-bench-design-") as d:
        exe = build_loop(Path(d))
        cg = UNIFIED / f"nt-bench-{uuid.uuid4().hex[:8]}"
        cg.mkdir()
        cgid = os.stat(cg).st_ino
        added: dict[str, list[float]] = {k: [] for k in VARIANTS}
        alone: list[float] = []
        try:
            progs = {k: _load(k, cgid) for k in VARIANTS}  # compiled once, attached one at a time
            for p in progs.values():
                _detach(p)
            for _ in range(repeats):
                base = workload([str(exe), str(n)], cg)["cpu_s"]
                alone.append(base)
                for k, p in progs.items():
                    _attach(p)
                    try:
                        added[k].append((workload([str(exe), str(n)], cg)["cpu_s"] - base) / n * 1e9)
                    finally:
                        _detach(p)
            for p in progs.values():
                p.cleanup()
        finally:
            os.rmdir(cg)
    return {"n": n, "repeats": repeats, "syscall": GETPPID,
            "alone_ns_per_call": median_spread([a / n * 1e9 for a in alone]),
            "added_ns_per_call": {k: median_spread(v) for k, v in added.items()}}


def _attach(b) -> None:
    for fn, tp in b._nt_probes:
        if tp.startswith(b"raw:"):
            b.attach_raw_tracepoint(tp=tp[4:], fn_name=fn)
        else:
            b.attach_tracepoint(tp=tp, fn_name=fn)


def _detach(b) -> None:
    probes = getattr(b, "_nt_probes", None)
    if probes is None:
        b._nt_probes = [(fn, b"raw:" + tp) for tp, fn in _raw_names(b)] + \
                       [(fn, tp) for tp, fn in _classic_names(b)]
    for tp in list(b.raw_tracepoint_fds):
        b.detach_raw_tracepoint(tp)
    for tp in list(b.tracepoint_fds):
        b.detach_tracepoint(tp)


def _raw_names(b):
    return [(tp, b"raw_tracepoint__" + tp) for tp in b.raw_tracepoint_fds]


def _classic_names(b):
    return [(tp, b"tracepoint__" + tp.replace(b":", b"__")) for tp in b.tracepoint_fds]


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
