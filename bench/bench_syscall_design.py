"""Design alternatives for in-kernel syscall counting, measured side by side.

Each variant is a small bcc program attached while the same compiled loop makes
N getppid calls in its own cgroup; the figure is the loop's added CPU time per
call (its user+sys time, where the BPF program runs, minus the loop alone in the
same repeat). Variants interleave within each repeat so that load from other
work on the machine falls on all of them alike.

- empty programs: the cost of the hook itself (raw vs classic tracepoint);
- hash: a shared hash keyed by (cgroup id, nr) with an atomic add (nodetape
  before the cgroup slots; bcc syscount's layout is keyed by nr alone);
- slots_percpu / slots_shared: the hint + owner check of slots.h, then a
  per-CPU row (no atomic, memory x CPUs) or a shared row with an atomic add
  (nodetape's design);
- nodetape_*: the `syscalls` and `latency` sources' own programs, built by the
  sources themselves (program_text, cflags) with one choice changed at a time:
  how the cgroup id is read (cgid.py: task_btf, probe_read, helper), whether
  the own-process check calls the pid helper on every call (`_pid`) or only in
  the recorder's cgroup, and where latency keeps a call's start.

With stats=True a second pass measures each variant's in-program time per run
(BPF_ENABLE_STATS; without the hook's own cost, immune to other load).
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
    "hash_raw": (KEYED, RAW),
    "slots_shared_raw": (SLOTS.format(table="BPF_ARRAY(c, u64, NR_SLOTS * NR_MAX);",
                                      add="__sync_fetch_and_add(v, 1)"), RAW),
    "slots_percpu_raw": (SLOTS.format(table="BPF_PERCPU_ARRAY(c, u64, NR_SLOTS * NR_MAX);", add="*v += 1"), RAW),
}
# the sources' programs: (source, cgroup id read, own check gated by cgroup, latency start store)
NODETAPE = {
    "nodetape_helper_pid_raw": ("syscalls", "helper", False, None),  # before this change
    "nodetape_helper_raw": ("syscalls", "helper", True, None),
    "nodetape_probe_read_raw": ("syscalls", "probe_read", True, None),
    "nodetape_task_btf_pid_raw": ("syscalls", "task_btf", False, None),
    "nodetape_task_btf_raw": ("syscalls", "task_btf", True, None),  # as shipped
    "nodetape_no_owner_raw": ("syscalls", "task_btf", True, None),  # a bound, not a design: see LABELS
    "latency_lru_helper_raw": ("latency", "helper", False, "lru_hash"),  # before this change
    "latency_lru_raw": ("latency", "task_btf", True, "lru_hash"),
    "latency_task_storage_raw": ("latency", "task_btf", True, "task_storage"),  # as shipped
}
LABELS = {
    "empty_classic": "classic `raw_syscalls:sys_enter`, empty program",
    "empty_raw": "raw tracepoint `sys_enter`, empty program",
    "hash_raw": "raw + hash (cgroup id, nr), atomic add (nodetape before the slots)",
    "slots_shared_raw": "raw + helper cgroup id + hint/owner slot lookup + shared row, atomic add",
    "slots_percpu_raw": "the same with a per-CPU row (no atomic; memory x CPUs)",
    "nodetape_helper_pid_raw": "`syscalls` before: cgroup id helper, pid helper on every call",
    "nodetape_helper_raw": "`syscalls`, cgroup id helper, own check behind the recorder's cgroup id",
    "nodetape_probe_read_raw": "`syscalls`, cgroup id by bpf_probe_read_kernel chain, gated own check",
    "nodetape_task_btf_pid_raw": "`syscalls`, cgroup id by BTF loads, pid helper on every call",
    "nodetape_task_btf_raw": "`syscalls` as shipped: cgroup id by BTF loads, gated own check",
    "nodetape_no_owner_raw": "the same trusting the hint without the owner check (not exact: what one "
                             "array lookup less could save at most)",
    "latency_lru_helper_raw": "`latency` before: LRU hash start, helpers for cgroup id and own check",
    "latency_lru_raw": "`latency`, LRU hash start, BTF cgroup id, gated own check",
    "latency_task_storage_raw": "`latency` as shipped: task storage start, BTF cgroup id, gated own check",
}


def _source_program(name: str) -> tuple[str, list[str]]:
    """The program text and cflags the source itself would load for one NODETAPE variant."""
    from nodetape.recorder.source import RecordContext
    from nodetape.recorder.sources.bpf.latency import SyscallLatencySource
    from nodetape.recorder.sources.bpf.syscalls import SyscallCountSource

    kind, read, gated, store = NODETAPE[name]
    src = (SyscallCountSource if kind == "syscalls" else SyscallLatencySource)()
    ctx = RecordContext(options={src.slots_option: 64})
    src.attach, src.cgid_read = "raw_tracepoint", read
    if store:
        src.start_store = store
    flags = src.cflags(ctx)
    if not gated:
        flags = [f for f in flags if not f.startswith("-DOWN_CGID=")]
    text = src.program_text(ctx)
    if name == "nodetape_no_owner_raw":
        check = "        u64 *owner = slot_owner.lookup(&slot);\n        if (owner && *owner == cgid)\n"
        assert check in text
        text = text.replace(check, "")
    return text, flags


def load_bpf(text: str, cflags: list[str] | None = None):
    from nodetape.recorder.sources.bpf import env as bpf_env

    bpf_env.probe_bpf()
    return bpf_env.import_bcc().BPF(text=text.encode(), cflags=cflags or [])


def _load(name: str, cgid: int):
    if name in NODETAPE:
        b = load_bpf(*_source_program(name))
    else:
        body, probe = VARIANTS[name]
        b = load_bpf(HEAD + (SLOTS_H.read_text() if "slots_" in name else "") + body + "\n" + probe)
    if "slots_" in name or name in NODETAPE:  # the workload's cgroup owns slot 3, as slots.py would have set it
        b[b"slot_owner"][ctypes.c_uint32(3)] = ctypes.c_uint64(cgid)
        b[b"slot_hint"][ctypes.c_uint32(cgid & 4095)] = ctypes.c_uint32(3)
    return b


def run(n: int = 3_000_000, repeats: int = 3, stats: bool = True) -> dict:
    from .common import median_spread

    names = [*VARIANTS, *NODETAPE]
    with tempfile.TemporaryDirectory(prefix="nt-bench-design-") as d:
        exe = build_loop(Path(d))
        cg = UNIFIED / f"nt-bench-{uuid.uuid4().hex[:8]}"
        cg.mkdir()
        cgid = os.stat(cg).st_ino
        added: dict[str, list[float]] = {k: [] for k in names}
        prog: dict[str, list[float]] = {k: [] for k in names}
        alone: list[float] = []
        progs = {}
        try:
            progs = {k: _load(k, cgid) for k in names}  # compiled once, attached one at a time
            for p in progs.values():
                _detach(p)
            for i in range(repeats):
                order = names[i % len(names):] + names[: i % len(names)]  # rotated: no variant always first
                base = workload([str(exe), str(n)], cg)["cpu_s"]
                alone.append(base)
                for k in order:
                    added[k].append((_attached(progs[k], exe, n, cg)["cpu_s"] - base) / n * 1e9)
                if stats:
                    _stats_pass(progs, order, exe, min(n, 1_000_000), cg, prog)
        finally:
            for p in progs.values():
                p.cleanup()
            os.rmdir(cg)
    out = {"n": n, "repeats": repeats, "syscall": GETPPID, "labels": LABELS,
           "alone_ns_per_call": median_spread([a / n * 1e9 for a in alone]),
           "added_ns_per_call": {k: median_spread(v) for k, v in added.items()}}
    if stats:
        out["prog_ns_per_run"] = {k: median_spread(v) for k, v in prog.items() if v}
    return out


def _attached(b, exe: Path, n: int, cg: Path) -> dict:
    _attach(b)
    try:
        return workload([str(exe), str(n)], cg)
    finally:
        _detach(b)


def _stats_pass(progs: dict, order: list[str], exe: Path, n: int, cg: Path, out: dict) -> None:
    """In-program ns per run of each variant (all its programs: latency's enter + exit per call)."""
    from .bpf_stats import fd_stats, stats_enabled

    with stats_enabled():
        for k in order:
            b = progs[k]
            before = [fd_stats("self", fn.fd) or (0, 0) for fn in b.funcs.values()]
            _attached(b, exe, n, cg)
            after = [fd_stats("self", fn.fd) or (0, 0) for fn in b.funcs.values()]
            ns = sum(a[0] - b0[0] for a, b0 in zip(after, before))
            out[k].append(ns / n)  # per syscall: a pair's two programs together


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


OLD_LABELS = {  # variants of earlier runs, for results.json files that predate `labels`
    "hash_classic": "classic + hash (cgroup id, nr), atomic add (nodetape before)",
    "percpu_nr_raw": "raw + cgroup id + per-CPU array by nr only (no cgroup: the floor)",
    "cache_shared_raw": "raw + per-CPU 1-entry (cgroup -> slot) cache + shared row, atomic add",
    "nodetape_raw": "the `syscalls` program as shipped (slot row, own-process check, hash fallback)",
    "nodetape_no_self_raw": "the same without the own-process check",
}


def render(d: dict | None, table, ns) -> list[str]:
    """The design table for BENCHMARKS.md (table and ns are report.py's cell helpers)."""
    if not d:
        return []
    if "failed" in d:
        return [f"Design alternatives: **failed:** {d['failed']}", ""]
    labels, prog = {**OLD_LABELS, **LABELS, **d.get("labels", {})}, d.get("prog_ns_per_run", {})
    rows = [[f"`{k}`", labels.get(k, ""), ns(v), ns(prog.get(k))] for k, v in d["added_ns_per_call"].items()]
    return [f"**Design alternatives** ({d['n']:,} getppid calls, {d['repeats']} repeats, variants interleaved; the "
            f"loop alone: {ns(d['alone_ns_per_call'])} ns CPU per call). Added CPU ns per call, and in-program ns "
            "per call from the kernel's BPF run-time stats (a separate pass; both programs of a latency pair; the "
            "stats' own clock reads included, the hook's cost not), median (min–max):", "",
            *table(["variant", "what the program does", "added ns/call", "in-program ns/call"], rows)]


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
