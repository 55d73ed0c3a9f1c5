/* opens: open, openat and openat2 of filtered cgroups, with path, flags and result.
 *
 * Enter stashes the path pointer and flags by thread; exit reads the path (by
 * then the user page is surely resident) and emits one record. Filtering and
 * the rate bound happen at enter, before any work: a task outside the allowed
 * cgroups costs one hash lookup. */
struct args_t {
    u64 fname;
    s32 flags;
    u32 pad;
};
struct ev {
    u64 ts;
    u64 cgid;
    s32 pid;
    s32 tgid;
    s32 flags;
    s32 ret;
    char comm[16];
    char path[PATH_LEN];
};
BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
BPF_HASH(inflight, u32, struct args_t, 16384);
BPF_HASH(allowed, u64, u8, MAX_CGROUPS);

static __always_inline int enter(const char *fname, int flags) {
    if (is_self())
        return 0;
#if !FILTER_ALL
    u64 cg = bpf_get_current_cgroup_id();
    if (!allowed.lookup(&cg))
        return 0;
#endif
#ifdef RATE_PER_CPU_NS
    if (!rate_ok(bpf_ktime_get_ns()))
        return 0;
#endif
    u32 tid = bpf_get_current_pid_tgid();
    struct args_t a = {};
    a.fname = (u64)fname;
    a.flags = flags;
    inflight.update(&tid, &a);
    return 0;
}

static __always_inline int leave(long ret) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tid = id;
    struct args_t *a = inflight.lookup(&tid);
    if (!a)
        return 0;
    struct ev *e = events.ringbuf_reserve(sizeof(struct ev));
    if (!e) {
        count_drop(DROP_RINGBUF_FULL);
        inflight.delete(&tid);
        return 0;
    }
    e->ts = bpf_ktime_get_boot_ns();
    e->cgid = bpf_get_current_cgroup_id();
    e->pid = tid;
    e->tgid = id >> 32;
    e->flags = a->flags;
    e->ret = ret;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    if (bpf_probe_read_user_str(&e->path, sizeof(e->path), (void *)a->fname) < 0)
        e->path[0] = 0;
    inflight.delete(&tid);
    events.ringbuf_submit(e, wake_flags());
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_openat) { return enter(args->filename, args->flags); }
TRACEPOINT_PROBE(syscalls, sys_exit_openat) { return leave(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_open) { return enter(args->filename, args->flags); }
TRACEPOINT_PROBE(syscalls, sys_exit_open) { return leave(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_openat2) {
    u64 flags = 0;
    bpf_probe_read_user(&flags, sizeof(flags), (void *)args->how);  /* struct open_how starts with u64 flags */
    return enter(args->filename, (int)flags);
}
TRACEPOINT_PROBE(syscalls, sys_exit_openat2) { return leave(args->ret); }
