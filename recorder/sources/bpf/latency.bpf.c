/* latency: syscall enter-to-exit time per thread, as cumulative log2
 * histograms per (cgroup2 id, syscall nr, bucket). Like syscalls.bpf.c the
 * counters only grow (atomic adds) and user space emits interval deltas.
 *
 * Buckets: 0 is a 0 ns latency; b >= 1 covers [2^(b-1), 2^b) ns. The common
 * path is the cgroup's slot row (slots.h): hist_slots[slot][nr][b] for
 * nr < NR_MAX and b < NR_BUCKETS (under 2^(NR_BUCKETS-1) ns); a cgroup
 * without a slot, a longer call (a blocking wait: rare by definition) or a
 * number >= NR_MAX is counted in the hash `hist`.
 *
 * The start of a call is kept per thread in BPF task storage (START_TASK_STORAGE,
 * one lookup in the task itself), else in an LRU hash by thread id: a thread
 * that never returns (exit_group, a killed task) leaves its start there and
 * the LRU forgets it. The manifest's `start_store` says which. */
struct start_t {
    u64 ts;
    u32 nr;
    u32 pad;
};
struct hkey_t {
    u64 cgid;
    u32 nr;
    u32 slot;  /* the bucket (named slot in the tape's history) */
};
#ifdef START_TASK_STORAGE
BPF_TASK_STORAGE(start, struct start_t);
#else
BPF_TABLE("lru_hash", u32, struct start_t, start, 65536);
#endif
BPF_F_TABLE("array", u32, u64, hist_slots, NR_SLOTS * NR_MAX * NR_BUCKETS, BPF_F_MMAPABLE);
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

#ifdef START_TASK_STORAGE
/* The start lives in the task itself (BPF task storage): no hash, no LRU
 * eviction, freed with the task. ts == 0: no call in flight. */
static __always_inline int on_enter(u32 nr) {
    struct start_t *s = start.task_storage_get((void *)bpf_get_current_task_btf(), 0,
                                               BPF_LOCAL_STORAGE_GET_F_CREATE);
    if (!s)
        return 0;
    s->ts = bpf_ktime_get_ns();
    s->nr = nr;
    return 0;
}

static __always_inline int on_exit(void) {
    struct start_t *s = start.task_storage_get((void *)bpf_get_current_task_btf(), 0, 0);
    if (!s || !s->ts)
        return 0;
    u64 delta = bpf_ktime_get_ns() - s->ts;
    u32 nr = s->nr;
    s->ts = 0;
#else
static __always_inline int on_enter(u32 nr) {
    u32 tid = bpf_get_current_pid_tgid();
    struct start_t s = {};
    s.ts = bpf_ktime_get_ns();
    s.nr = nr;
    start.update(&tid, &s);
    return 0;
}

static __always_inline int on_exit(void) {
    u32 tid = bpf_get_current_pid_tgid();
    struct start_t *s = start.lookup(&tid);
    if (!s)
        return 0;
    u64 delta = bpf_ktime_get_ns() - s->ts;
    u32 nr = s->nr;
    start.delete(&tid);
#endif
    u64 cgid = current_cgid();
    if (is_self_in(cgid))  /* the recorder's own calls: stamped at enter, dropped here */
        return 0;
    u32 b = delta ? log2_slot(delta) + 1 : 0;
    if (nr < NR_MAX && b < NR_BUCKETS) {
        u32 slot = cgroup_slot(cgid);
        if (slot < NR_SLOTS) {
            u32 i = (slot * NR_MAX + nr) * NR_BUCKETS + b;
            u64 *c = hist_slots.lookup(&i);
            if (c) {
                __sync_fetch_and_add(c, 1);
                return 0;
            }
        }
    }
    struct hkey_t k = {};
    k.cgid = cgid;
    k.nr = nr;
    k.slot = b;
    u64 *v = hist.lookup(&k);
    if (v) {
        __sync_fetch_and_add(v, 1);
        count_hash_add();
        return 0;
    }
    u64 one = 1;
    if (hist.insert(&k, &one) == 0) {
        count_hash_add();
        return 0;
    }
    v = hist.lookup(&k);
    if (v) {
        __sync_fetch_and_add(v, 1);
        count_hash_add();
        return 0;
    }
    count_drop(DROP_MAP_FULL);
    return 0;
}

#ifdef RAW_TP
RAW_TRACEPOINT_PROBE(sys_enter) {
    return on_enter((u32)ctx->args[1]);
}
RAW_TRACEPOINT_PROBE(sys_exit) {
    return on_exit();
}
#else
TRACEPOINT_PROBE(raw_syscalls, sys_enter) {
    return on_enter((u32)args->id);
}
TRACEPOINT_PROBE(raw_syscalls, sys_exit) {
    return on_exit();
}
#endif
