"""Cgroup slots of the syscall counters against the real kernel: counts stay exact
when a cgroup waits for a slot (counted in the hash), when a removed cgroup's slot
is given to another, and on the classic tracepoint when raw ones are not used."""

from __future__ import annotations

import os

import pytest

from kernelutil import rmdir_tree, unique_name
from test_bpf_sources import GETPPID_C, UNIFIED, compile_c, requirements, run_in

pytestmark = pytest.mark.kernel
GETPPID = 110


def getppid_counts(batches, cgids) -> dict[int, int]:
    out = {c: 0 for c in cgids}
    for _, b in batches:
        d = b.to_pydict()
        for c, i, nr in zip(d["count"], d["cgroup_id"], d["syscall_nr"]):
            if i in out and nr == GETPPID:
                out[i] += c
    return out


@pytest.fixture
def loop(tmp_path):
    requirements()
    return compile_c(tmp_path, "getppid", GETPPID_C)


def started(cls, options):
    from nodetape.recorder.source import RecordContext

    src = cls()
    ctx = RecordContext(options=options)
    src.probe(ctx)
    src.start(ctx)
    return src


def test_one_slot_waiting_and_recycled_counts_exact(loop):
    """One slot: A holds it, B waits in the hash, A is removed and its slot goes to B;
    every call of each is counted once. Other cgroups on the node compete for the slot
    at every drain, so the test gives it by hand (what _drain does after a read) and
    keeps the drains from scanning."""
    from nodetape.recorder.sources.bpf import shared_resolver
    from nodetape.recorder.sources.bpf.syscalls import SyscallCountSource

    top = UNIFIED / unique_name("nt-slots")
    a, b = top / "a", top / "b"
    for d in (a, b):
        d.mkdir(parents=True)
    ida, idb = os.stat(a).st_ino, os.stat(b).st_ino
    src = started(SyscallCountSource, {"syscall_slots": 1})
    src._scan_after = float("inf")
    out = []
    try:
        assert src.table.assign([ida]) == 0
        run_in(a, [str(loop), "20000"], check=True)  # in A's slot row
        run_in(b, [str(loop), "3000"], check=True)  # B has no slot: the hash
        out += src._drain()
        assert src.table.by_cgid == {ida: 0} and src.waiting >= 1
        os.rmdir(a)
        out += src._drain()  # the read that sees A's final value
        res = shared_resolver(src.ctx)
        res.rescan()
        assert src.table.recycle(set(res.paths)) == 1 and src.table.by_cgid == {}
        assert src.table.assign([idb]) == 0 and src.table.by_cgid == {idb: 0}
        run_in(b, [str(loop), "50000"], check=True)  # in the recycled row, zeroed before B got it
    finally:
        out += src.stop()
        rmdir_tree(top)
    assert getppid_counts(out, [ida, idb]) == {ida: 20000, idb: 53000}
    assert src.stats.dropped == 0


def test_drain_releases_a_removed_cgroups_slot(loop):
    """With every slot taken the drain scans the tree and takes back the slot of a removed
    cgroup, after the read that saw its final count."""
    from nodetape.recorder.sources.bpf.syscalls import SyscallCountSource

    a = UNIFIED / unique_name("nt-slots")
    a.mkdir()
    ida = os.stat(a).st_ino
    src = started(SyscallCountSource, {"syscall_slots": 1})
    src.rescan_ns = 0
    out = []
    try:
        src.table.assign([ida])
        run_in(a, [str(loop), "4321"], check=True)
        os.rmdir(a)
        out += src._drain()
        assert ida not in src.table.by_cgid
    finally:
        out += src.stop()
        rmdir_tree(a)
    assert getppid_counts(out, [ida]) == {ida: 4321}


def test_the_hint_alone_finds_the_slot(loop):
    """The common path needs no hash: with the cgroup's slot_of entry removed, its calls
    still land in its row (the hint user space wrote through the mmap is the kernel's)."""
    import ctypes

    from nodetape.recorder.sources.bpf.syscalls import SyscallCountSource

    cg = UNIFIED / unique_name("nt-hint")
    cg.mkdir()
    cid = os.stat(cg).st_ino
    src = started(SyscallCountSource, {})
    try:
        src.table.assign([cid])
        del src.table.slot_of[ctypes.c_uint64(cid)]
        run_in(cg, [str(loop), "2500"], check=True)
        keys, _ = src.counters.read_deltas()
        cgids, cols, counts = src.table.read_deltas()
    finally:
        src.stop()
        rmdir_tree(cg)
    assert cid not in keys["cgid"].tolist()
    assert dict(zip(cols[cgids == cid].tolist(), counts[cgids == cid].tolist()))[GETPPID] == 2500


@pytest.mark.parametrize("attach", ["tracepoint", "raw_tracepoint"])
def test_attach_kind_counts_exact_and_is_recorded(loop, attach):
    from nodetape.recorder.sources.bpf.latency import SyscallLatencySource
    from nodetape.recorder.sources.bpf.syscalls import SyscallCountSource

    cg = UNIFIED / unique_name("nt-attach")
    cg.mkdir()
    cid = os.stat(cg).st_ino
    srcs = [started(cls, {"syscall_attach": attach}) for cls in (SyscallCountSource, SyscallLatencySource)]
    out: dict = {s.name: [] for s in srcs}
    try:
        run_in(cg, [str(loop), "777"], check=True)
        for s in srcs:
            out[s.name] += s._drain()
        run_in(cg, [str(loop), "12345"], check=True)
    finally:
        for s in srcs:
            out[s.name] += s.stop()
        rmdir_tree(cg)
    for s in srcs:
        assert s.environment()["attach"] == attach
        assert "raw_tracepoint_refused" not in s.environment()
    assert getppid_counts(out["syscalls"], [cid]) == {cid: 13122}
    n = sum(c for _, b in out["latency"] for c, i, nr in zip(*(b.column(k).to_pylist() for k in
                                                                ("count", "cgroup_id", "syscall_nr")))
            if i == cid and nr == GETPPID)
    assert n == 13122


def test_unknown_attach_kind_is_a_reason(loop):
    from nodetape.core.errors import SourceUnavailable
    from nodetape.recorder.sources.bpf.syscalls import SyscallCountSource

    with pytest.raises(SourceUnavailable, match="syscall_attach"):
        started(SyscallCountSource, {"syscall_attach": "kprobe"})


def test_own_calls_skipped_others_in_its_cgroup_counted(loop):
    """The recorder's own calls are skipped in the kernel behind a compare with its cgroup's
    id: a process in the recorder's cgroup that is not the recorder is still counted, by
    every cgroup id read and in both syscall programs. A stand-in recorder (own_pid) waits
    in the cgroup, then execs the loop (same pid: its calls are the recorder's)."""
    import subprocess

    from nodetape.recorder.source import RecordContext
    from nodetape.recorder.sources.bpf.latency import SyscallLatencySource
    from nodetape.recorder.sources.bpf.syscalls import SyscallCountSource

    cg = UNIFIED / unique_name("nt-own")
    cg.mkdir()
    cid = os.stat(cg).st_ino
    me = subprocess.Popen(["sh", "-c", f'read x; exec "{loop}" 4321'], stdin=subprocess.PIPE,
                          preexec_fn=lambda: open(cg / "cgroup.procs", "w").write("0"))
    try:
        srcs = []
        for read in ("task_btf", "helper"):
            for cls in (SyscallCountSource, SyscallLatencySource):
                src = cls()
                ctx = RecordContext(own_pid=me.pid, options={"syscall_cgroup_id_read": read})
                src.probe(ctx)
                src.start(ctx)
                assert src.environment()["cgroup_id_read"] == read
                srcs.append(src)
        me.communicate(b"go\n", timeout=30)
        assert me.returncode == 0
        run_in(cg, [str(loop), "1234"], check=True)
    finally:
        out = [(s, s.stop()) for s in srcs]
        if me.poll() is None:
            me.kill()
        rmdir_tree(cg)
    for s, batches in out:
        assert getppid_counts(batches, [cid]) == {cid: 1234}, (s.name, s.cgid_read)


@pytest.mark.parametrize("options", [{"syscall_cgroup_id_read": "probe_read"}, {"syscall_cgroup_id_read": "helper"},
                                     {"latency_start_store": "lru_hash"}], ids=["probe_read", "helper", "lru_hash"])
def test_each_fallback_counts_exact_and_is_recorded(loop, options):
    """The fallbacks (how the cgroup id is read; latency's start in the LRU hash) count exactly like the
    default and the manifest's environment says which ran."""
    from nodetape.recorder.sources.bpf.latency import SyscallLatencySource
    from nodetape.recorder.sources.bpf.syscalls import SyscallCountSource

    cg = UNIFIED / unique_name("nt-fallback")
    cg.mkdir()
    cid = os.stat(cg).st_ino
    srcs = [started(cls, options) for cls in (SyscallCountSource, SyscallLatencySource)]
    out: dict = {s.name: [] for s in srcs}
    try:
        run_in(cg, [str(loop), "777"], check=True)
        for s in srcs:
            out[s.name] += s._drain()
        run_in(cg, [str(loop), "4321"], check=True)
    finally:
        for s in srcs:
            out[s.name] += s.stop()
        rmdir_tree(cg)
    for s in srcs:
        env = s.environment()
        assert env["cgroup_id_read"] == options.get("syscall_cgroup_id_read", "task_btf"), env
        assert getppid_counts(out[s.name], [cid]) == {cid: 5098}, (s.name, env)
    assert srcs[1].environment()["start_store"] == options.get("latency_start_store", "task_storage")


def test_without_kernel_btf_the_helper_is_used_and_the_refusals_recorded(loop, monkeypatch, tmp_path):
    """A kernel without /sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF off) gives no offsets: the source
    falls back to the cgroup id helper on the raw tracepoint, counts exactly, and says why."""
    from nodetape.recorder.sources.bpf import btf
    from nodetape.recorder.sources.bpf.syscalls import SyscallCountSource

    monkeypatch.setattr(btf, "VMLINUX", tmp_path / "no-vmlinux-btf")
    btf.vmlinux_btf.cache_clear()
    cg = UNIFIED / unique_name("nt-nobtf")
    cg.mkdir()
    cid = os.stat(cg).st_ino
    try:
        src = started(SyscallCountSource, {})
        out = []
        try:
            run_in(cg, [str(loop), "2222"], check=True)
        finally:
            out += src.stop()
            rmdir_tree(cg)
    finally:
        btf.vmlinux_btf.cache_clear()
    env = src.environment()
    assert (env["attach"], env["cgroup_id_read"]) == ("raw_tracepoint", "helper")
    assert set(env["refused"]) == {"raw_tracepoint/task_btf", "raw_tracepoint/probe_read"}
    assert all("BTF" in why for why in env["refused"].values()), env["refused"]
    assert "raw_tracepoint_refused" not in env
    assert getppid_counts(out, [cid]) == {cid: 2222}


def test_unknown_cgroup_id_read_is_a_reason(loop):
    from nodetape.core.errors import SourceUnavailable
    from nodetape.recorder.sources.bpf.syscalls import SyscallCountSource

    with pytest.raises(SourceUnavailable, match="syscall_cgroup_id_read"):
        started(SyscallCountSource, {"syscall_cgroup_id_read": "kfunc"})
