"""The shared lifecycle of sources that count in the kernel and drain once per interval.

The kernel adds to cumulative counters: a cgroup's slot row (slots.h, the
common path) or a hash keyed by (cgroup id, syscall nr, ...) for the rest;
every interval one read of each turns their growth into rows. Subclasses name
their maps, key layout and options, and turn (keys, deltas) into a batch.

The programs attach as raw tracepoints (RAW_TRACEPOINT_PROBE(sys_enter)); where
the kernel refuses them the classic raw_syscalls tracepoints are used, and the
source's environment in the manifest says which (`attach`) and why.
"""

from __future__ import annotations

import contextlib
from typing import ClassVar

import numpy as np

from ...source import Batches, RecordContext, SourceUnavailable
from . import HERE, BpfSource, bpf_env, shared_resolver, syscall_names
from .cgid import CGID_READS, cgid_flags, own_cgroup_id
from .counters import CumulativeCounters
from .slots import SlotCounters

NR_MAX = 512  # syscall numbers below this have a column in a slot row (x86_64 tops at ~470)
HINT_SIZE = 4096
ATTACH_KINDS = ("raw_tracepoint", "tracepoint")
RESCAN_NS = 10_000_000_000


class IntervalCounterSource(BpfSource):
    map_name: ClassVar[bytes] = b""
    slot_map: ClassVar[bytes] = b""
    key: ClassVar[np.dtype]
    max_keys: ClassVar[int] = 65536
    max_keys_option: ClassVar[str] = ""
    sampled = True  # poll() drains only when due(): the loop sleeps between intervals
    slots: ClassVar[int] = 512
    slots_option: ClassVar[str] = ""
    buckets: ClassVar[int] = 1  # columns per syscall nr in a slot row
    attach_option: ClassVar[str] = "syscall_attach"
    cgid_option: ClassVar[str] = "syscall_cgroup_id_read"  # forces one of CGID_READS (tests, benchmarks)
    rescan_ns: ClassVar[int] = RESCAN_NS

    def __init__(self) -> None:
        super().__init__()
        self.attach = None
        self.cgid_read = None
        self.refused: dict[str, str] = {}
        self.table = None

    def nslots(self, ctx: RecordContext) -> int:
        return max(1, int(ctx.options.get(self.slots_option, self.slots)))

    def cflags(self, ctx: RecordContext) -> list[str]:
        flags = [*super().cflags(ctx), f"-DMAX_KEYS={int(ctx.options.get(self.max_keys_option, self.max_keys))}",
                 f"-DNR_SLOTS={self.nslots(ctx)}", f"-DNR_MAX={NR_MAX}", f"-DHINT_SIZE={HINT_SIZE}",
                 f"-DNR_BUCKETS={self.buckets}"]
        own = own_cgroup_id(ctx.own_pid, ctx.layout.v2_root, ctx.proc_root)
        flags += [f"-DOWN_CGID={own}"] if own is not None else []
        flags += cgid_flags(self.cgid_read)
        return flags + (["-DRAW_TP"] if self.attach == "raw_tracepoint" else [])

    def program_text(self, ctx: RecordContext) -> str:
        common = (HERE / "common.h").read_text() + "\n" + (HERE / "slots.h").read_text()
        return common + "\n" + (HERE / self.program).read_text()

    def environment(self) -> dict:
        env = {**super().environment(), "attach": self.attach, "cgroup_id_read": self.cgid_read}
        if self.refused:
            env["refused"] = self.refused  # "attach/cgroup_id_read" -> why the kernel or the BTF said no
        raw = [v for k, v in self.refused.items() if k.startswith("raw_tracepoint/")]
        if self.attach != "raw_tracepoint" and raw:
            env["raw_tracepoint_refused"] = raw[-1]
        if self.table is not None:
            env["cgroup_slots"] = self.table.nslots
            env["cgroups_waiting_for_a_slot"] = self.waiting  # counted exactly in the hash meanwhile
        return env

    def start(self, ctx: RecordContext) -> Batches:
        want = ctx.options.get(self.attach_option, "raw_tracepoint")
        if want not in ATTACH_KINDS:
            raise SourceUnavailable(f"option {self.attach_option}: {want!r} is not one of {', '.join(ATTACH_KINDS)}")
        self.refused = {}
        self._load(ctx, want)
        self.names = syscall_names()
        self.counters = CumulativeCounters(self.bpf[self.map_name], self.key)
        self.table = SlotCounters(self.bpf, self.slot_map, self.nslots(ctx), NR_MAX * self.buckets, HINT_SIZE)
        self.waiting = 0
        self._scan_after = 0
        self.interval_start = ctx.clock()
        self._primed = False
        return []

    def _load(self, ctx: RecordContext, want: str) -> None:
        """Compile and attach the cheapest combination the kernel accepts: the raw tracepoint
        before the classic one (e.g. a kernel without BPF_RAW_TRACEPOINT_OPEN), the cgroup id
        by BTF loads before bpf_probe_read_kernel before the helper (cgid.py)."""
        reads = CGID_READS
        forced = ctx.options.get(self.cgid_option)
        if forced is not None:
            if forced not in CGID_READS:
                raise SourceUnavailable(f"option {self.cgid_option}: {forced!r} is not one of {', '.join(CGID_READS)}")
            reads = (forced,)
        attaches = [want] + (["tracepoint"] if want == "raw_tracepoint" else [])
        bpf_env.probe_bpf()  # a missing bcc, tracefs or headers is the reason itself, not worth six tries
        for attach in attaches:
            for read in reads:
                self.attach, self.cgid_read = attach, read
                try:
                    BpfSource.start(self, ctx)
                    return
                except (SourceUnavailable, ValueError) as e:
                    self.refused[self.variant()] = getattr(e, "reason", None) or str(e)
        raise SourceUnavailable(f"{self.program}: every attach kind and cgroup id read was refused: {self.refused}")

    def variant(self) -> str:
        return f"{self.attach}/{self.cgid_read}"

    def rows(self, keys: np.ndarray, counts: np.ndarray, start: int, end: int) -> Batches:
        raise NotImplementedError

    def slot_keys(self, cgids: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Slot-row cells as keys of the hash's layout."""
        keys = np.zeros(len(cgids), dtype=self.key)
        keys["cgid"] = cgids
        keys["nr"] = cols // self.buckets
        if self.buckets > 1:
            keys["slot"] = cols % self.buckets
        return keys

    def _wants_scan(self, now: int) -> bool:
        """Scan the tree when the hash is half full or few slots are free; when every slot
        belongs to a live cgroup, not more often than every rescan_ns (a walk of the tree)."""
        if self.counters.wants_eviction():
            return True
        return len(self.table.free) <= self.table.nslots // 4 and now >= self._scan_after

    def _drain(self, last: bool = False) -> Batches:
        live = None
        if self._wants_scan(self.ctx.clock()):
            res = shared_resolver(self.ctx)
            res.rescan()
            live = set(res.paths)
        self.update_drops()  # and the count of adds to the hash, taken before reading it
        hkeys, hcounts = self.counters.read_deltas(live, force=last, adds=self.hash_adds)
        cgids, cols, scounts = self.table.read_deltas()
        end = self.ctx.clock()
        start, self.interval_start = self.interval_start, end
        if live is not None and not self.table.recycle(live):  # after the read that saw their final values
            self._scan_after = end + self.rescan_ns
        if len(hkeys):
            fits = (hkeys["nr"] < NR_MAX) & (hkeys["slot"] < self.buckets if self.buckets > 1 else True)
            self.waiting = self.table.assign(np.unique(hkeys["cgid"][fits]))
        keys, counts = merge(np.concatenate([hkeys, self.slot_keys(cgids, cols)]),
                             np.concatenate([hcounts.astype(np.int64), scounts]))
        if not len(keys):
            return []
        return self.counted(self.rows(keys, counts, start, end))

    def syscall_columns(self, keys: np.ndarray, start: int, end: int) -> dict:
        nrs = keys["nr"].astype(np.int32)
        return {
            "interval_start_ns": np.full(len(keys), start, dtype=np.int64),
            "interval_end_ns": np.full(len(keys), end, dtype=np.int64),
            "cgroup_id": keys["cgid"],
            "syscall_nr": nrs,
            "syscall_name": [self.names.get(n) for n in nrs.tolist()],
        }

    def poll(self, now_ns: int) -> Batches:
        if not self._primed:
            # the first due() would fire at once; counting started in start()
            self._primed = True
            self.due(now_ns)
            return []
        return self._drain() if self.due(now_ns) else []

    def detach(self) -> None:
        super().detach()
        for tp in list(getattr(self.bpf, "raw_tracepoint_fds", {}) if self.bpf else {}):
            with contextlib.suppress(Exception):
                self.bpf.detach_raw_tracepoint(tp)

    def stop(self) -> Batches:
        if self.bpf is None:
            return []
        self.detach()  # no call after this read can be missed: none are counted any more
        out = self._drain(last=True)
        self.table.close()
        self.close_bpf()
        return out


def merge(keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum the counts of equal keys (a cgroup's calls in the interval its slot was given
    are partly in the hash, partly in its row), sorted by key."""
    if len(keys) == 0:
        return keys, counts
    names = list(keys.dtype.names)
    order = np.lexsort([keys[n] for n in reversed(names)])  # by cgid, then nr, then the rest
    keys, counts = keys[order], counts[order]
    dup = np.ones(len(keys), dtype=bool)
    for n in names:
        dup[1:] &= keys[n][1:] == keys[n][:-1]
    dup[0] = False
    if not dup.any():  # the common case: every cell once (the hash had nothing new)
        return keys, counts
    uniq, inv = np.unique(keys, return_inverse=True)
    out = np.zeros(len(uniq), dtype=np.int64)
    np.add.at(out, inv.reshape(-1), counts)
    return uniq, out
