/* syscalls: count sys_enter per (cgroup2 id, syscall nr).
 *
 * Counters are cumulative and never reset while their cgroup lives: user
 * space reads them every interval and subtracts the previous read. Every
 * increment is an atomic add on a value that is not zeroed while it can still
 * grow, so each call is counted in exactly one interval, whatever the rate.
 *
 * The common path is the cgroup's slot row (slots.h): slot_counts[slot *
 * NR_MAX + nr]. A cgroup without a slot, or a number >= NR_MAX (x32, a bad
 * number passed to syscall(2)), is counted in the hash `counts` instead.
 *
 * Attached as a raw tracepoint (RAW_TP: the nr is ctx->args[1]; ~40 ns per
 * call cheaper than the classic raw_syscalls:sys_enter), or the classic
 * tracepoint where raw tracepoints are refused. */
BPF_F_TABLE("array", u32, u64, slot_counts, NR_SLOTS * NR_MAX, BPF_F_MMAPABLE);
struct key_t {
    u64 cgid;
    u32 nr;
    u32 pad;
};
BPF_HASH(counts, struct key_t, u64, MAX_KEYS);

static __always_inline int count_syscall(u32 nr) {
    u64 cgid = current_cgid();
    if (is_self_in(cgid))
        return 0;
    if (nr < NR_MAX) {
        u32 slot = cgroup_slot(cgid);
        if (slot < NR_SLOTS) {
            u32 i = slot * NR_MAX + nr;
            u64 *c = slot_counts.lookup(&i);
            if (c) {
                __sync_fetch_and_add(c, 1);
                return 0;
            }
        }
    }
    struct key_t k = {};
    k.cgid = cgid;
    k.nr = nr;
    u64 *v = counts.lookup(&k);
    if (v) {
        __sync_fetch_and_add(v, 1);
        count_hash_add();
        return 0;
    }
    u64 one = 1;
    if (counts.insert(&k, &one) == 0) {  /* BPF_NOEXIST */
        count_hash_add();
        return 0;
    }
    /* another CPU inserted the key between our lookup and insert */
    v = counts.lookup(&k);
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
    return count_syscall((u32)ctx->args[1]);
}
#else
TRACEPOINT_PROBE(raw_syscalls, sys_enter) {
    return count_syscall((u32)args->id);
}
#endif
