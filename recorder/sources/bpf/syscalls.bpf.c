/* syscalls: count raw_syscalls:sys_enter per (cgroup2 id, syscall nr).
 *
 * Counters are cumulative and never reset: user space reads them every
 * interval and subtracts the previous read. Every increment is an atomic add
 * on a value that is never deleted while it can still grow, so each call is
 * counted in exactly one interval, whatever the rate (no reset race). */
struct key_t {
    u64 cgid;
    u32 nr;
    u32 pad;
};
BPF_HASH(counts, struct key_t, u64, MAX_KEYS);

TRACEPOINT_PROBE(raw_syscalls, sys_enter) {
    if (is_self())
        return 0;
    struct key_t k = {};
    k.cgid = bpf_get_current_cgroup_id();
    k.nr = (u32)args->id;
    u64 *v = counts.lookup(&k);
    if (v) {
        __sync_fetch_and_add(v, 1);
        return 0;
    }
    u64 one = 1;
    if (counts.insert(&k, &one) == 0)  /* BPF_NOEXIST */
        return 0;
    /* another CPU inserted the key between our lookup and insert */
    v = counts.lookup(&k);
    if (v) {
        __sync_fetch_and_add(v, 1);
        return 0;
    }
    count_drop(DROP_MAP_FULL);
    return 0;
}
