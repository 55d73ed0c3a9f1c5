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
