"""inotify queue overflow (IN_Q_OVERFLOW) in the `cgroup` source, on real cgroupfs.

fs.inotify.max_queued_events is lowered to 64 while the recorder creates its
inotify instance (the kernel copies the limit into the instance at
inotify_init, so it is restored right after), then 300 cgroups are made in the
cgroup2 hierarchy and 300 in the v1 cpu hierarchy in one storm: far more events
than the queue holds. The test proves that the overflow is counted (dropped,
drop_reason 'inotify_overflow', in recorder_stats and the manifest), that the
rescan leaves no cgroup out of cgroup_events, and that the removal storm after
it is recorded too.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from kernelutil import (
    CGROUP_ROOT,
    require,
    require_root,
    rmdir_tree,
    unique_name,
    v1_controller_dir,
)
from nodetape.recorder.loop import Recorder, RecordOptions
from nodetape.recorder.source import RecordContext

from nodetape.tape_reader import connect, open_tapes

pytestmark = pytest.mark.kernel

MAX_QUEUED = Path("/proc/sys/fs/inotify/max_queued_events")
N = 300


def test_creation_storm_overflows_the_queue_and_the_rescan_misses_nothing(tmp_path):
    require_root()
    unified = CGROUP_ROOT / "unified"
    require(unified.is_dir(), "no cgroup2 hierarchy at /sys/fs/cgroup/unified")
    cpu = v1_controller_dir("cpu")
    require(cpu is not None, "no v1 cpu hierarchy")
    require(MAX_QUEUED.exists(), "no fs.inotify.max_queued_events")
    name = unique_name("nt-overflow")
    bases = {"unified": unified / name, cpu.name: cpu / name}
    for b in bases.values():
        b.mkdir()
    original = MAX_QUEUED.read_text()
    restored = threading.Event()

    def restore():
        if not restored.is_set():
            MAX_QUEUED.write_text(original)
            restored.set()

    ctx = RecordContext(cgroup_root=CGROUP_ROOT, interval_ns=250_000_000)
    out = tmp_path / "tape"
    rec = Recorder(RecordOptions(out=out, sources=["cgroup"], ctx=ctx, duration_ns=3_000_000_000,
                                 tick_ns=50_000_000))
    errors: list[Exception] = []
    done = threading.Event()

    def storm():
        try:
            deadline = time.monotonic() + 10
            while "cgroup_tree" not in ctx.shared and time.monotonic() < deadline:
                time.sleep(0.002)
            restore()  # the recorder's instance has its limit now; nobody else gets 64
            tree = ctx.shared["cgroup_tree"]
            time.sleep(0.3)
            # The reader thread can keep up with a storm on an idle machine; holding
            # the tree's lock stands in for a reader busy elsewhere (a rescan, a GC
            # pause), so the kernel queue overflows on every run, not on some.
            with tree._lock:
                for i in range(N):
                    for b in bases.values():
                        os.mkdir(b / f"cg{i}")
            time.sleep(0.6)
            for i in range(N):
                for b in bases.values():
                    os.rmdir(b / f"cg{i}")
            time.sleep(0.5)
        except Exception as e:  # noqa: BLE001 - surfaced in the test thread
            errors.append(e)
        finally:
            done.set()

    th = threading.Thread(target=storm)
    try:
        MAX_QUEUED.write_text("64")
        th.start()
        manifest = rec.run()
        th.join()
    finally:
        restore()
        done.wait(15)
        for b in bases.values():
            rmdir_tree(b)
    assert not errors, errors
    assert MAX_QUEUED.read_text() == original

    src = manifest["sources"]["cgroup"]
    assert src["status"] == "stopped"
    assert src["dropped"] >= 1 and src["drop_reason"] == "inotify_overflow", src
    con = connect(open_tapes([out]))
    stats = con.execute("SELECT max(dropped), any_value(drop_reason) FROM recorder_stats "
                        "WHERE source = 'cgroup' AND dropped > 0").fetchone()
    assert stats[0] == src["dropped"] and stats[1] == "inotify_overflow"

    for hier in bases:
        rows = con.execute("SELECT cgroup_path, kind, source FROM cgroup_events WHERE hierarchy = ? "
                           "AND cgroup_path LIKE ? ORDER BY ts_ns, seq", [hier, f"/{name}/%"]).fetchall()
        want = {f"/{name}/cg{i}" for i in range(N)}
        born = {}
        for path, kind, source in rows:
            if kind in ("created", "seen"):
                born.setdefault(path, (kind, source))
        # every cgroup of the storm is in the tape: created (inotify) or seen (the rescan)
        assert set(born) == want, (hier, len(born))
        assert {v for v in born.values()} <= {("created", "inotify"), ("seen", "scan")}
        # the queue held 64 events: the rescan found the rest
        assert sum(1 for v in born.values() if v == ("seen", "scan")) > 0, hier
        # and each one's removal, from inotify or from a rescan after another overflow
        removed = {p for p, k, s in rows if k == "removed" and s in ("inotify", "scan")}
        assert removed == want, (hier, len(removed))
        # one birth and one removal per cgroup: the rescan reports nothing twice
        assert sum(1 for _, k, _ in rows if k in ("created", "seen")) == N
        assert sum(1 for _, k, _ in rows if k == "removed") == N
