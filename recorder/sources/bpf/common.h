/* Shared by every nodetape BPF program (prepended by bpf/__init__.py).
 *
 * drops: per-CPU counters of what the program could not record, indexed as
 * DROP_REASONS in __init__.py; per-CPU so counting a drop never contends. */
#define DROP_RINGBUF_FULL 0
#define DROP_RATE_LIMIT 1
#define DROP_MAP_FULL 2
/* not a drop: adds to the program's hash (slots.h), read with the drops in one call */
#define HASH_ADDS 3
BPF_PERCPU_ARRAY(drops, u64, 4);

static __always_inline void count_drop(int reason) {
    u64 *d = drops.lookup(&reason);
    if (d)
        *d += 1;  /* per-CPU slot; tracepoint programs do not nest on one CPU */
}

#ifdef RINGBUF_WAKE_RECORDS
/* Ring-buffer submit flags (raw-stream sources): no wake-up per record, since
 * the recorder drains the ring every interval and waking it per record would
 * only cost the producer; but every RINGBUF_WAKE_RECORDS-th record of a CPU
 * forces one (a quarter of the ring over all CPUs), so a burst is drained long
 * before the ring fills while an idle recorder sleeps. bcc cannot hand the
 * ring itself to bpf_ringbuf_query, hence a count. */
BPF_PERCPU_ARRAY(ringbuf_submits, u64, 1);
static __always_inline u64 wake_flags(void) {
    int z = 0;
    u64 *n = ringbuf_submits.lookup(&z);
    if (!n)
        return BPF_RB_NO_WAKEUP;
    *n += 1;
    return *n % RINGBUF_WAKE_RECORDS ? BPF_RB_NO_WAKEUP : BPF_RB_FORCE_WAKEUP;
}
#endif

/* The recorder's own process (OWN_TGID, -D flag) is ignored in the kernel so
 * that recording never feeds on itself. */
static __always_inline int is_self(void) {
    return (bpf_get_current_pid_tgid() >> 32) == OWN_TGID;
}

/* The same for a program that has the task's cgroup2 id at hand: only a task
 * of the recorder's own cgroup (OWN_CGID, -D flag: its cgroup2 id at start)
 * can be the recorder, so the pid helper is called only on that compare's
 * rare true branch. A recorder moved to another cgroup after start would see
 * its own calls counted there (never another's calls skipped). */
static __always_inline int is_self_in(u64 cgid) {
#ifdef OWN_CGID
    if (cgid != OWN_CGID)
        return 0;
#endif
    return is_self();
}

#ifdef RATE_PER_CPU_NS
/* Token bucket per CPU as a virtual clock (GCRA): each event costs
 * RATE_PER_CPU_NS of budget; up to RATE_BURST_NS of budget may be borrowed. */
BPF_PERCPU_ARRAY(rate_tat, u64, 1);
static __always_inline int rate_ok(u64 now) {
    int z = 0;
    u64 *tat = rate_tat.lookup(&z);
    if (!tat)
        return 1;
    u64 t = *tat > now ? *tat : now;
    if (t - now > RATE_BURST_NS) {
        count_drop(DROP_RATE_LIMIT);
        return 0;
    }
    *tat = t + RATE_PER_CPU_NS;
    return 1;
}
#endif
