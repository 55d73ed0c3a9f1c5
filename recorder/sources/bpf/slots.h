/* cgroup slots: dense per-cgroup counter rows instead of a hash keyed by cgroup.
 *
 * A hash lookup keyed by (cgroup id, syscall nr) was half of the counter's
 * cost (issue 15: +140-160 ns per call against +75-90 ns for an array indexed
 * by nr). Here each cgroup that makes syscalls owns a slot, a row of an array,
 * so the common path is two read-only array loads and one atomic add:
 *
 *   slot_hint[cgid % HINT_SIZE] -> slot   (a hint; may be stale or collide)
 *   slot_owner[slot] == cgid ?            (the truth: user space writes it)
 *
 * Only user space writes these maps (slots.py), in this order: counts row
 * zeroed, slot_owner, slot_of, slot_hint. A stale or half-written hint fails
 * the owner check and falls back to the slot_of hash; a cgroup without a slot
 * (its first interval, or every slot taken) is counted in the program's hash,
 * exactly, as before. A slot is recycled only after its cgroup was removed
 * and the read that followed saw its final value: no task of a removed
 * cgroup can pass the owner check again, and cgroup2 ids are not reused. */
/* u32 values; array elements are 8-byte aligned, so user space maps them as u64 */
BPF_F_TABLE("array", u32, u32, slot_hint, HINT_SIZE, BPF_F_MMAPABLE);
BPF_F_TABLE("array", u32, u64, slot_owner, NR_SLOTS, BPF_F_MMAPABLE);
BPF_HASH(slot_of, u64, u32, NR_SLOTS);

/* Adds made to the program's hash (the path of cgroups without a slot), per CPU.
 * Reading the hash walks all its buckets however few entries it has; user space
 * takes this count before each read and skips the read while it has not moved
 * (counters.py), so an idle node whose cgroups all have slots never walks it.
 * Counted after the add: a count seen unchanged means every add before the
 * previous count was in the previous read (x86 keeps the two stores in order;
 * on a weaker order an add could show an interval late, never be lost: every
 * counter is cumulative and the last read, at stop, is never skipped). */
static __always_inline void count_hash_add(void) {
    int i = HASH_ADDS;  /* the entry after the drop reasons in `drops` (common.h) */
    u64 *n = drops.lookup(&i);
    if (n)
        *n += 1;  /* per-CPU slot; tracepoint programs do not nest on one CPU */
}

/* The slot of a cgroup, or NR_SLOTS when it has none. */
static __always_inline u32 cgroup_slot(u64 cgid) {
    u32 h = (u32)cgid & (HINT_SIZE - 1);
    u32 *s = slot_hint.lookup(&h);
    if (s) {
        u32 slot = *s;
        u64 *owner = slot_owner.lookup(&slot);
        if (owner && *owner == cgid)
            return slot;
    }
    s = slot_of.lookup(&cgid);
    return s ? *s : NR_SLOTS;
}

/* The current task's cgroup2 id (what bpf_get_current_cgroup_id() returns:
 * task->cgroups->dfl_cgrp->kn->id), read one of three ways (-D flags from
 * interval.py; the manifest's `cgroup_id_read` says which):
 *
 *   CGID_TASK_BTF    four plain loads from bpf_get_current_task_btf() at
 *                    offsets read from the kernel's BTF (btf.py): the verifier
 *                    knows the types, the JIT inlines the loads;
 *   CGID_PROBE_READ  the same chain with bpf_probe_read_kernel;
 *   (neither)        the helper, where the offsets or the loads are refused. */
static __always_inline u64 current_cgid(void) {
#if defined(CGID_TASK_BTF)
    char *p = (char *)bpf_get_current_task_btf();
    p = *(char **)(p + OFF_TASK_CGROUPS);
    p = *(char **)(p + OFF_CSS_SET_DFL_CGRP);
    p = *(char **)(p + OFF_CGROUP_KN);
    return *(u64 *)(p + OFF_KERNFS_NODE_ID);
#elif defined(CGID_PROBE_READ)
    char *p = (char *)bpf_get_current_task();
    u64 id = 0;
    bpf_probe_read_kernel(&p, sizeof(p), p + OFF_TASK_CGROUPS);
    bpf_probe_read_kernel(&p, sizeof(p), p + OFF_CSS_SET_DFL_CGRP);
    bpf_probe_read_kernel(&p, sizeof(p), p + OFF_CGROUP_KN);
    bpf_probe_read_kernel(&id, sizeof(id), p + OFF_KERNFS_NODE_ID);
    return id;
#else
    return bpf_get_current_cgroup_id();
#endif
}
