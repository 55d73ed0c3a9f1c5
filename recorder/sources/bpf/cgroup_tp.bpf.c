/* cgroup-tp: cgroup:cgroup_{mkdir,rmdir,release,attach_task} with the kernel's
 * own hierarchy id, cgroup id, level and path (relative to the hierarchy root). */
#define EV_MKDIR 1
#define EV_RMDIR 2
#define EV_RELEASE 3
#define EV_ATTACH 4

struct ev {
    u64 ts;
    u64 id;
    u32 kind;
    s32 root;
    s32 level;
    s32 pid;
    char comm[16];
    char path[PATH_LEN];
};
BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);

static __always_inline struct ev *emit(u32 kind, int root, int level, u64 id, int pid, void *args, u16 path_off) {
    struct ev *e = events.ringbuf_reserve(sizeof(struct ev));
    if (!e) {
        count_drop(DROP_RINGBUF_FULL);
        return 0;
    }
    e->ts = bpf_ktime_get_boot_ns();
    e->kind = kind;
    e->root = root;
    e->level = level;
    e->id = id;
    e->pid = pid;
    __builtin_memset(&e->comm, 0, sizeof(e->comm));
    bpf_probe_read_kernel_str(&e->path, sizeof(e->path), args + path_off);
    return e;
}

TRACEPOINT_PROBE(cgroup, cgroup_mkdir) {
    struct ev *e = emit(EV_MKDIR, args->root, args->level, args->id, 0, args,
                          args->data_loc_path & 0xFFFF);
    if (e)
        events.ringbuf_submit(e, wake_flags());
    return 0;
}

TRACEPOINT_PROBE(cgroup, cgroup_rmdir) {
    struct ev *e = emit(EV_RMDIR, args->root, args->level, args->id, 0, args,
                          args->data_loc_path & 0xFFFF);
    if (e)
        events.ringbuf_submit(e, wake_flags());
    return 0;
}

TRACEPOINT_PROBE(cgroup, cgroup_release) {
    struct ev *e = emit(EV_RELEASE, args->root, args->level, args->id, 0, args,
                          args->data_loc_path & 0xFFFF);
    if (e)
        events.ringbuf_submit(e, wake_flags());
    return 0;
}

TRACEPOINT_PROBE(cgroup, cgroup_attach_task) {
    if (args->pid == OWN_TGID)
        return 0;
    struct ev *e = emit(EV_ATTACH, args->dst_root, args->dst_level, args->dst_id, args->pid,
                          args, args->data_loc_dst_path & 0xFFFF);
    if (e) {
        bpf_probe_read_kernel_str(&e->comm, sizeof(e->comm), (void *)args + (args->data_loc_comm & 0xFFFF));
        events.ringbuf_submit(e, wake_flags());
    }
    return 0;
}
