"""drops: packet drops from skb:kfree_skb (packet_drops).

The reason number is named with the kernel's own table, parsed from the
tracepoint's print format (__print_symbolic(REC->reason, { 2, "NOT_SPECIFIED" }, ...)),
so names match the running kernel, not a header. The drop location is
symbolized from /proc/kallsyms as bcc's ksym does (bpfsys.ksyms), once per distinct address.
"""

from __future__ import annotations

import os
import re

import numpy as np

from ....schemas import batch
from ...source import Batches, RecordContext
from .bpfsys import ksyms
from .btf import member_offset
from .stream import RawStreamSource, arrow_cols

RECORD = np.dtype([
    ("ts", "<u8"), ("location", "<u8"), ("cgid", "<u8"),
    ("reason", "<i4"), ("protocol", "<i4"), ("ifindex", "<i4"), ("pid", "<i4"),
])
DEFAULT_RATE = 10_000
_SYM = re.compile(r'\{\s*(\d+)\s*,\s*"(\w+)"\s*\}')


def parse_reason_names(format_text: str) -> dict[int, str]:
    """Drop reason number -> name from the kfree_skb format's __print_symbolic list."""
    m = re.search(r"__print_symbolic\(REC->reason,(.*)\)", format_text, re.S)
    return {int(n): name for n, name in _SYM.findall(m.group(1))} if m else {}


class PacketDropsSource(RawStreamSource):
    name = "drops"
    tables = ("packet_drops",)
    summary = "packet drops (skb:kfree_skb) with reason, symbolized location, protocol and interface"
    program = "drops.bpf.c"
    tracepoints = ("skb:kfree_skb",)
    record = RECORD
    ringbuf_pages = 64

    def cflags(self, ctx: RecordContext) -> list[str]:
        dev = member_offset("sk_buff", "dev")
        ifi = member_offset("net_device", "ifindex")
        rate = int(ctx.options.get("drops_rate", DEFAULT_RATE))
        flags = [*super().cflags(ctx), f"-DSKB_DEV_OFF={-1 if dev is None else dev}",
                 f"-DDEV_IFINDEX_OFF={-1 if ifi is None else ifi}"]
        if rate > 0:
            self.rate_window_ns = max(1, (os.cpu_count() or 1) * 1_000_000_000 // rate)
            flags += [f"-DRATE_PER_CPU_NS={self.rate_window_ns}ULL",
                      f"-DRATE_BURST_NS={100_000_000}ULL"]
        return flags

    def _after_start(self, ctx: RecordContext) -> None:
        from nodetape.recorder.sources.bpf import env as bpf_env

        self.reason_names = parse_reason_names(bpf_env.tracepoint_format("skb", "kfree_skb"))

    def decode(self, r: np.ndarray) -> Batches:
        locs = r["location"]
        uniq, inv = np.unique(locs, return_inverse=True)
        syms = ksyms(uniq.tolist(), show_offset=True)  # one pass over kallsyms for new addresses, then cached
        names = np.array([syms[a].decode(errors="replace") for a in uniq.tolist()], dtype=object)
        rnames = self.reason_names
        ur, rinv = np.unique(r["reason"], return_inverse=True)
        reasons = np.array([rnames.get(x) for x in ur.tolist()], dtype=object)
        ifi = r["ifindex"]
        cols = {
            "ts_ns": r["ts"].astype(np.int64),
            "location": names[inv],
            "location_addr": locs,
            "reason": reasons[rinv],
            "reason_code": r["reason"],
            "protocol": r["protocol"],
            "ifindex": np.ma.masked_array(ifi, ifi <= 0),
            "pid": r["pid"],
            "cgroup_id": r["cgid"],
        }
        return [("packet_drops", batch("packet_drops", arrow_cols(cols)))]
