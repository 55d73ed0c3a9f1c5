/* lineage: fork, exec and exit of every task, with comm and cgroup2 id.
 *
 * Whether a fork made a thread or a process is in clone_flags, which only
 * task:task_newtask carries: it stashes the flags by child pid for
 * sched_process_fork. exit_code is read from the exiting task_struct at
 * EXIT_CODE_OFF, an offset taken from the running kernel's BTF (the installed
 * headers may describe another kernel's layout); -1 when BTF is missing. */
#define EV_FORK 1
#define EV_EXEC 2
#define EV_EXIT 3
#define F_TGID 1      /* tgid is known */
#define F_EXIT_CODE 2 /* exit_code is known */
#define CLONE_THREAD_ 0x00010000

struct ev {
    u64 ts;
    u64 cgid;
    u32 kind;
    u32 flags;
    s32 pid;
    s32 tgid;
    s32 ppid;
    s32 parent_tgid;
    s32 exit_code;
    u32 pad;
    char comm[16];
    char filename[FNAME_LEN];
};
BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
BPF_TABLE("lru_hash", u32, u64, newtask_flags, 8192);

static __always_inline struct ev *reserve(u32 kind) {
    struct ev *e = events.ringbuf_reserve(sizeof(struct ev));
    if (!e) {
        count_drop(DROP_RINGBUF_FULL);
        return 0;
    }
    e->ts = bpf_ktime_get_boot_ns();
    e->cgid = bpf_get_current_cgroup_id();
    e->kind = kind;
    e->flags = 0;
    e->exit_code = 0;
    e->pad = 0;
    e->filename[0] = 0;
    return e;
}

TRACEPOINT_PROBE(task, task_newtask) {
    if (is_self())
        return 0;
    u32 pid = args->pid;
    u64 flags = args->clone_flags;
    newtask_flags.update(&pid, &flags);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_fork) {
    if (is_self())
        return 0;
    u64 id = bpf_get_current_pid_tgid();
    u32 child = args->child_pid;
    struct ev *e = reserve(EV_FORK);
    if (!e)
        return 0;
    e->pid = child;
    e->ppid = args->parent_pid;
    e->parent_tgid = id >> 32;
    u64 *cf = newtask_flags.lookup(&child);
    if (cf) {
        e->tgid = (*cf & CLONE_THREAD_) ? (s32)(id >> 32) : (s32)child;
        e->flags |= F_TGID;
        newtask_flags.delete(&child);
    } else {
        e->tgid = 0;
    }
    bpf_get_current_comm(&e->comm, sizeof(e->comm));  /* the child starts with the parent's comm */
    events.ringbuf_submit(e, wake_flags());
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exec) {
    if (is_self())
        return 0;
    u64 id = bpf_get_current_pid_tgid();
    struct ev *e = reserve(EV_EXEC);
    if (!e)
        return 0;
    e->pid = args->pid;
    e->tgid = id >> 32;
    e->flags |= F_TGID;
    e->ppid = args->old_pid;
    e->parent_tgid = 0;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    u16 off = args->data_loc_filename & 0xFFFF;
    bpf_probe_read_kernel_str(&e->filename, sizeof(e->filename), (void *)args + off);
    events.ringbuf_submit(e, wake_flags());
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit) {
    if (is_self())
        return 0;
    u64 id = bpf_get_current_pid_tgid();
    struct ev *e = reserve(EV_EXIT);
    if (!e)
        return 0;
    e->pid = args->pid;
    e->tgid = id >> 32;
    e->flags |= F_TGID;
    e->ppid = 0;
    e->parent_tgid = 0;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
#if EXIT_CODE_OFF >= 0
    struct task_struct *t = (struct task_struct *)bpf_get_current_task();
    int code = 0;
    if (bpf_probe_read_kernel(&code, sizeof(code), (void *)t + EXIT_CODE_OFF) == 0) {
        e->exit_code = code;
        e->flags |= F_EXIT_CODE;
    }
#endif
    events.ringbuf_submit(e, wake_flags());
    return 0;
}
