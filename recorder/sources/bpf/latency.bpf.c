/* latency: syscall enter-to-exit time per thread, as cumulative log2
 * histograms per (cgroup2 id, syscall nr, bucket). Like syscalls.bpf.c the
 * counters only grow (atomic adds) and user space emits interval deltas.
 * A thread that never returns (exit_group, a killed task) leaves its start in
 * an LRU map, which forgets it. */
struct start_t {
    u64 ts;
    u32 nr;
    u32 pad;
};
struct hkey_t {
    u64 cgid;
    u32 nr;
    u32 slot;  /* 0: 0 ns; else latency in [2^(slot-1), 2^slot) ns */
};
BPF_TABLE("lru_hash", u32, struct start_t, start, 65536);
BPF_HASH(hist, struct hkey_t, u64, MAX_KEYS);

static __always_inline u32 log2_slot(u64 v) {
    u32 r = 0;
    if (v >= (1ULL << 32)) { v >>= 32; r += 32; }
    if (v >= (1ULL << 16)) { v >>= 16; r += 16; }
    if (v >= (1ULL << 8)) { v >>= 8; r += 8; }
    if (v >= (1ULL << 4)) { v >>= 4; r += 4; }
    if (v >= (1ULL << 2)) { v >>= 2; r += 2; }
    if (v >= (1ULL << 1)) { r += 1; }
    return r;
}

TRACEPOINT_PROBE(raw_syscalls, sys_enter) {
    if (is_self())
        return 0;
    u32 tid = bpf_get_current_pid_tgid();
    struct start_t s = {};
    s.ts = bpf_ktime_get_ns();
    s.nr = (u32)args->id;
    start.update(&tid, &s);
    return 0;
}

TRACEPOINT_PROBE(raw_syscalls, sys_exit) {
    u32 tid = bpf_get_current_pid_tgid();
    struct start_t *s = start.lookup(&tid);
    if (!s)
        return 0;
    u64 delta = bpf_ktime_get_ns() - s->ts;
    struct hkey_t k = {};
    k.cgid = bpf_get_current_cgroup_id();
    k.nr = s->nr;
    k.slot = delta ? log2_slot(delta) + 1 : 0;
    start.delete(&tid);
    u64 *v = hist.lookup(&k);
    if (v) {
        __sync_fetch_and_add(v, 1);
        return 0;
    }
    u64 one = 1;
    if (hist.insert(&k, &one) == 0)
        return 0;
    v = hist.lookup(&k);
    if (v) {
        __sync_fetch_and_add(v, 1);
        return 0;
    }
    count_drop(DROP_MAP_FULL);
    return 0;
}
