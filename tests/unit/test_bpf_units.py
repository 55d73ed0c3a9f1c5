"""Pure parts of the eBPF sources, on literal inputs: ring buffer record
decoding (on a memfd laid out like a BPF ring buffer), syscall and drop-reason
tables, hierarchy names, the opens filter, log2 buckets, header discovery."""

from __future__ import annotations

import mmap
import os
import struct

import numpy as np
import pytest

from nodetape.recorder.sources.bpf import env as bpf_env
from nodetape.recorder.sources.bpf import cgroup_id_paths, parse_unistd
from nodetape.recorder.sources.bpf.cgroup_tp import hierarchy_names, parse_proc_cgroup
from nodetape.recorder.sources.bpf.drops import parse_reason_names
from nodetape.recorder.sources.bpf.latency import bucket_ns
from nodetape.recorder.sources.bpf.opens import matching_ids, parse_globs
from nodetape.recorder.sources.bpf.ringbuf import BUSY, DISCARD, RingBufferConsumer, record_size

PAGE = mmap.PAGESIZE
DT = np.dtype([("a", "<u8"), ("b", "<u4")])  # 12 bytes -> 24-byte records


class FakeRing:
    """A memfd with the ring buffer's layout: consumer page, producer page, data.

    The kernel maps the data pages twice; a memfd cannot, so tests write records
    that wrap into both copies themselves."""

    def __init__(self, size=PAGE):
        self.size = size
        self.fd = os.memfd_create("ringbuf")
        os.ftruncate(self.fd, 2 * PAGE + 2 * size)
        self.m = mmap.mmap(self.fd, 2 * PAGE + 2 * size)
        self.prod = 0

    def put(self, a, b, flags=0, payload_len=DT.itemsize):
        rec = record_size(payload_len)
        off = self.prod % self.size
        body = struct.pack("<II", payload_len | flags, 0) + struct.pack("<QI", a, b).ljust(rec - 8, b"\0")
        for base in (2 * PAGE + off, 2 * PAGE + self.size + off):  # both copies
            end = min(base + rec, 2 * PAGE + 2 * self.size)
            self.m[base:end] = body[:end - base]
        if off + rec > self.size:  # the wrapped tail also lands at the start of the first copy
            tail = off + rec - self.size
            self.m[2 * PAGE:2 * PAGE + tail] = body[rec - tail:]
        self.prod += rec
        self.m[PAGE:PAGE + 8] = struct.pack("<Q", self.prod)

    def cons(self):
        return struct.unpack("<Q", self.m[0:8])[0]


def test_ringbuf_reads_committed_records_and_stops_at_busy():
    ring = FakeRing()
    c = RingBufferConsumer(ring.fd, ring.size, DT)
    assert len(c.read()) == 0
    ring.put(1, 10)
    ring.put(2, 20, DISCARD)
    ring.put(3, 30)
    ring.put(4, 40, BUSY)  # reserved, not committed yet
    ring.put(5, 50)
    got = c.read()
    assert got["a"].tolist() == [1, 3] and got["b"].tolist() == [10, 30]
    assert ring.cons() == 3 * 24  # consumed up to the busy record, discarded one included
    assert len(c.read()) == 0  # still busy


def test_ringbuf_wraps_and_bounds_each_read():
    ring = FakeRing()
    c = RingBufferConsumer(ring.fd, ring.size, DT, max_bytes=10 * 24)
    n_total = PAGE // 24 * 3  # three times around the ring
    seen = []
    i = 0
    while i < n_total:
        while i < n_total and ring.prod - ring.cons() + 24 <= ring.size:
            ring.put(i, i % 7)
            i += 1
        got = c.read()
        assert len(got) <= 10
        seen += got["a"].tolist()
    while len(got := c.read()):
        seen += got["a"].tolist()
    assert seen == list(range(n_total))


def test_ringbuf_skips_a_record_of_the_wrong_size():
    ring = FakeRing()
    c = RingBufferConsumer(ring.fd, ring.size, DT)
    ring.put(1, 1)
    ring.put(2, 2, payload_len=16)  # same 24-byte stride, wrong length: malformed
    ring.put(3, 3)
    assert c.read()["a"].tolist() == [1]
    assert c.read()["a"].tolist() == []
    assert c.read()["a"].tolist() == [3]
    assert c.malformed == 1


def test_ringbuf_rejects_sizes_that_are_not_pages():
    with pytest.raises(ValueError):
        RingBufferConsumer(-1, 1000, DT)


def test_parse_unistd():
    text = "#define __NR_read 0\n#define __NR_getppid 110\n#define __NR_openat2 437\n#define X 1\n"
    assert parse_unistd(text) == {0: "read", 110: "getppid", 437: "openat2"}


def test_parse_reason_names():
    fmt = ('print fmt: "skbaddr=%p reason: %s", REC->skbaddr, __print_symbolic(REC->reason, '
           '{ 2, "NOT_SPECIFIED" }, { 3, "NO_SOCKET" }, { 77, "MAX" })')
    assert parse_reason_names(fmt) == {2: "NOT_SPECIFIED", 3: "NO_SOCKET", 77: "MAX"}
    assert parse_reason_names("print fmt: nothing") == {}


def test_hierarchy_names_from_proc_cgroup():
    text = "12:pids:/\n9:name=systemd:/init.scope\n3:cpuset:/\n1:cpu:/x\n2:cpuacct:/\n0::/user.slice\n"
    ctls = {"cpu": "cpu", "cpuacct": "cpuacct", "cpuset": "cpuset", "pids": "pids", "name=systemd": "systemd"}
    assert hierarchy_names(parse_proc_cgroup(text), ctls) == {
        0: "unified", 12: "pids", 9: "systemd", 3: "cpuset", 1: "cpu", 2: "cpuacct"}
    # cpu,cpuacct co-mounted: both controllers name one hierarchy
    assert hierarchy_names({4: ["cpu", "cpuacct"]}, {"cpu": "cpu,cpuacct", "cpuacct": "cpu,cpuacct"})[4] == "cpu,cpuacct"


def test_opens_filter_includes_descendants():
    paths = {1: "/", 2: "/kubepods.slice", 3: "/kubepods.slice/kubepods-pod1.slice", 4: "/system.slice",
             5: "/kubepods.slice/kubepods-pod1.slice/cri-containerd-ab.scope", 6: "/kubepodsX"}
    assert matching_ids(paths, parse_globs(None)) == {2, 3, 5, 6}
    assert matching_ids(paths, parse_globs("/kubepods.slice")) == {2, 3, 5}
    assert matching_ids(paths, ["/nothing"]) == set()


def test_bucket_ns():
    assert bucket_ns(np.array([0, 1, 2, 11])).tolist() == [0, 1, 2, 1024]


def test_cgroup_id_is_the_directory_inode(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    ids = cgroup_id_paths(tmp_path)
    assert ids[os.stat(tmp_path).st_ino] == "/"
    assert ids[os.stat(tmp_path / "a" / "b").st_ino] == "/a/b"


def test_nearest_headers_and_merge(tmp_path):
    src = tmp_path / "src"
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    for ver in ("6.1.0-9", "5.10.0-30"):
        (src / f"linux-headers-{ver}-common/include/linux").mkdir(parents=True)
        (src / f"linux-headers-{ver}-common/include/linux/kconfig.h").write_text("common")
        (src / f"linux-headers-{ver}-common/arch/x86/include/asm").mkdir(parents=True)
        (src / f"linux-headers-{ver}-{arch}/include/generated").mkdir(parents=True)
        (src / f"linux-headers-{ver}-{arch}/include/generated/autoconf.h").write_text("arch")
        (src / f"linux-headers-{ver}-{arch}/arch/x86/include/generated").mkdir(parents=True)
    ver, common, arch_tree = bpf_env.nearest_headers("6.18.44-custom", src)
    assert ver == "6.1.0-9"
    merged = bpf_env.merged_headers(ver, common, arch_tree, cache_root=tmp_path / "cache")
    assert (merged / "include/linux/kconfig.h").read_text() == "common"
    assert (merged / "include/generated/autoconf.h").read_text() == "arch"
    assert (merged / "arch/x86/include/asm").is_dir() and (merged / "arch/x86/include/generated").is_dir()
    assert bpf_env.merged_headers(ver, common, arch_tree, cache_root=tmp_path / "cache") == merged
    assert bpf_env.nearest_headers("6.1.0", tmp_path / "none") is None


def test_cstr_cuts_at_the_first_nul_of_a_reused_buffer():
    import numpy as np

    from nodetape.recorder.sources.bpf.stream import cstr

    # a buffer that held "/kubepods/burstable/pod1/long-container-id" before "/a/b" was written into it
    stale = b"/a/b\0" + b"pods/burstable/pod1/long-container-id"[5:] + b"\0" * 3
    a = np.array([stale, b"/x\0", b"full-width-no-nul", "ünï/cödé".encode() + b"\0junk"], dtype="S40")
    assert cstr(a) == ["/a/b", "/x", "full-width-no-nul", "ünï/cödé"]
    assert cstr(np.array([], dtype="S8")) == []


def _btf(types: list[tuple[str, int, int, int, bytes]]) -> bytes:
    """A literal BTF blob: (name, kind, vlen, size_or_type, extra bytes) per type, ids from 1."""
    strs, offs = b"\0", []
    for name, *_ in types:
        offs.append(len(strs) if name else 0)
        if name:
            strs += name.encode() + b"\0"
    body = b"".join(struct.pack("<III", off, kind << 24 | vlen, st) + extra
                    for off, (_, kind, vlen, st, extra) in zip(offs, types))
    return struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(body), len(body), len(strs)) + body + strs


def test_btf_func_id_names_only_functions():
    from nodetape.recorder.sources.bpf.btf import Btf

    blob = _btf([("int", 1, 0, 4, struct.pack("<I", 32)),        # 1: INT (4 extra bytes)
                 ("throttle_cfs_rq", 4, 0, 0, b""),              # 2: a STRUCT of that name: not a function
                 ("", 13, 0, 1, b""),                            # 3: FUNC_PROTO returning int
                 ("throttle_cfs_rq", 12, 0, 3, b""),             # 4: the FUNC
                 ("throttle_cfs_rq_x", 12, 0, 3, b"")])          # 5: a longer name sharing the prefix
    btf = Btf(blob)
    assert btf.func_id("throttle_cfs_rq") == 4
    assert btf.func_id("throttle_cfs_rq_x") == 5
    assert btf.func_id("throttle_cfs") is None
    assert btf.struct_ids("throttle_cfs_rq") == [2]


def test_kprobe_check_reads_the_pmu_and_tracefs(tmp_path):
    from nodetape.recorder.sources.bpf.throttle_probe import kprobe_check

    pmu = tmp_path / "kprobe" / "type"
    assert "no kprobe PMU" in kprobe_check(str(pmu), (tmp_path / "tracing",))
    (tmp_path / "tracing").mkdir()
    (tmp_path / "tracing" / "kprobe_events").write_text("")
    assert "offers" in kprobe_check(str(pmu), (tmp_path / "tracing",))
    pmu.parent.mkdir()
    pmu.write_text("6\n")
    assert "kprobe PMU" in kprobe_check(str(pmu), ()) and "offers" in kprobe_check(str(pmu), ())


# -- cgroup slots (slots.py) on memfd-backed arrays laid out like the BPF maps ---

class MemfdTable:
    def __init__(self, nbytes: int):
        self.map_fd = os.memfd_create("nt-slots")
        os.ftruncate(self.map_fd, -(-nbytes // PAGE) * PAGE)


class SlotOf(dict):
    """slot_of as user space sees it: ctypes keys and values."""

    def __setitem__(self, k, v):
        super().__setitem__(k.value, v.value)

    def __delitem__(self, k):
        super().__delitem__(k.value)


def slot_table(nslots=2, row=4, hint=16):
    from nodetape.recorder.sources.bpf.slots import SlotCounters

    maps = {b"c": MemfdTable(nslots * row * 8), b"slot_owner": MemfdTable(nslots * 8),
            b"slot_hint": MemfdTable(hint * 8), b"slot_of": SlotOf()}
    return SlotCounters(maps, b"c", nslots, row, hint), maps


def test_slots_assign_read_recycle():
    t, maps = slot_table()
    assert t.assign([100, 117, 200]) == 1  # two slots, three cgroups: one waits
    assert t.by_cgid == {100: 0, 117: 1} and maps[b"slot_of"] == {100: 0, 117: 1}
    assert list(t.owner) == [100, 117]
    # 117 % 16 == 5 and 100 % 16 == 4: each its own hint
    assert t.hint[4] == 0 and t.hint[5] == 1
    t.counts[0, 2] += 5  # what the kernel's atomic adds do
    t.counts[1, 0] += 1
    cg, cols, d = t.read_deltas()
    assert sorted(zip(cg.tolist(), cols.tolist(), d.tolist())) == [(100, 2, 5), (117, 0, 1)]
    t.counts[0, 2] += 2
    cg, cols, d = t.read_deltas()
    assert (cg.tolist(), cols.tolist(), d.tolist()) == ([100], [2], [2])
    assert t.recycle({117}) == 1  # 100 was removed: its row is zeroed and its slot free
    assert t.by_cgid == {117: 1} and t.counts[0].tolist() == [0, 0, 0, 0] and t.owner[0] == 0
    assert maps[b"slot_of"] == {117: 1}
    assert t.assign([200]) == 0 and t.by_cgid[200] == 0
    assert t.read_deltas()[0].size == 0  # the zeroed row does not read as negative growth
    t.close()


def test_slots_hint_kept_for_a_live_owner():
    t, _ = slot_table(nslots=3, hint=16)
    t.assign([3, 19])  # both hash to hint 3: the first keeps it, the second goes through slot_of
    assert t.hint[3] == 0
    t.close()


def test_merge_sums_a_cgroup_split_between_hash_and_row():
    from nodetape.recorder.sources.bpf.interval import merge
    from nodetape.recorder.sources.bpf.syscalls import KEY

    keys = np.zeros(3, dtype=KEY)
    keys["cgid"] = [7, 5, 7]
    keys["nr"] = [110, 0, 110]
    k, c = merge(keys, np.array([3, 1, 4], dtype=np.int64))
    assert k["cgid"].tolist() == [5, 7] and k["nr"].tolist() == [0, 110] and c.tolist() == [1, 7]


def test_kallsyms_lookup_takes_the_nearest_text_symbol_at_or_below(tmp_path):
    from nodetape.recorder.sources.bpf.bpfsys import kallsyms_lookup

    ks = tmp_path / "kallsyms"
    ks.write_text("ffffffff81000000 T _stext\n"
                  "ffffffff81001000 t helper\n"
                  "ffffffff81002000 D some_data\n"
                  "ffffffff81003000 T kfree_skb_reason\n"
                  "ffffffffc0001000 t mod_fn\t[nf_tables]\n")
    got = kallsyms_lookup([0xffffffff81003044, 0xffffffff81001010, 0xffffffff81002010, 0x1000], str(ks))
    assert got[0xffffffff81003044] == ("kfree_skb_reason", 0x44)
    assert got[0xffffffff81001010] == ("helper", 0x10)
    assert got[0xffffffff81002010] == ("helper", 0x1010)  # data symbols are not code locations
    assert 0x1000 not in got


def test_possible_cpus_counts_ranges_and_lists(tmp_path):
    from nodetape.recorder.sources.bpf.bpfsys import possible_cpus

    for i, (text, n) in enumerate((("0\n", 1), ("0-3\n", 4), ("0,2-5\n", 6))):
        p = tmp_path / f"possible{i}"  # answers are cached per path
        p.write_text(text)
        assert possible_cpus(str(p)) == n


def test_loader_assembles_descriptors_in_the_childs_order():
    from nodetape.recorder.sources.bpf.loader import LoadFailed, _assemble

    reply = {"maps": [{"name": "counts", "type": 1, "key_size": 16, "value_size": 8, "max_entries": 64},
                      {"name": "events", "type": 27, "key_size": 0, "value_size": 0, "max_entries": 4096}],
             "tracepoints": ["raw_syscalls:sys_enter"], "raw_tracepoints": ["sys_exit"], "programs": 2}
    prog = _assemble(reply, [10, 11, 12, 13, 14, 15])
    assert prog[b"counts"].map_fd == 10 and prog[b"counts"].max_entries == 64 and prog[b"counts"].key_size == 16
    assert prog[b"events"].map_fd == 11
    assert prog.tracepoint_fds == {b"raw_syscalls:sys_enter": 12} and prog.raw_tracepoint_fds == {b"sys_exit": 13}
    with pytest.raises(LoadFailed):
        _assemble(reply, [10, 11])
