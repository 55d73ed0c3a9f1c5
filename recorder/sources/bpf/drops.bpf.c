/* drops: skb:kfree_skb with the drop reason and location.
 *
 * ifindex is skb->dev->ifindex, read at offsets taken from the running
 * kernel's BTF (SKB_DEV_OFF, DEV_IFINDEX_OFF; -1 when unknown). Packet drop
 * storms can be huge, so a per-CPU token bucket bounds the rate. */
#include <net/dropreason.h>  /* enum skb_drop_reason, named in the generated tracepoint struct */

struct ev {
    u64 ts;
    u64 location;
    u64 cgid;
    s32 reason;
    s32 protocol;
    s32 ifindex;
    s32 pid;
};
BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);

TRACEPOINT_PROBE(skb, kfree_skb) {
    if (is_self())
        return 0;
#ifdef RATE_PER_CPU_NS
    if (!rate_ok(bpf_ktime_get_ns()))
        return 0;
#endif
    struct ev *e = events.ringbuf_reserve(sizeof(struct ev));
    if (!e) {
        count_drop(DROP_RINGBUF_FULL);
        return 0;
    }
    e->ts = bpf_ktime_get_boot_ns();
    e->location = (u64)args->location;
    e->cgid = bpf_get_current_cgroup_id();
    e->reason = args->reason;
    e->protocol = args->protocol;
    e->pid = bpf_get_current_pid_tgid();
    e->ifindex = -1;
#if SKB_DEV_OFF >= 0 && DEV_IFINDEX_OFF >= 0
    void *dev = 0;
    if (bpf_probe_read_kernel(&dev, sizeof(dev), (void *)args->skbaddr + SKB_DEV_OFF) == 0 && dev) {
        int ifi = 0;
        if (bpf_probe_read_kernel(&ifi, sizeof(ifi), dev + DEV_IFINDEX_OFF) == 0)
            e->ifindex = ifi;
    }
#endif
    events.ringbuf_submit(e, wake_flags());
    return 0;
}
