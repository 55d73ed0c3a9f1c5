"""Cgroup storms on real cgroupfs: the `cgroup` source misses no cgroup, and counts what it lost.

- A storm of 2 x 3,100 nested cgroups in cgroup2 and the v1 cpu, cpuacct, memory
  and pids hierarchies (31,000 mkdir and as many rmdir, the storm of
  bench/bench_storm.py): every cgroup is in the tape, born and removed, and any
  drop is counted with a reason. Before the fix, each IN_DELETE scanned every
  known cgroup under the tree's lock, the reader fell so far behind that a whole
  round of nested cgroups was gone before it could watch their parents, and
  3,000 cgroups per hierarchy were missing without a drop counted. How long the
  polls take during this storm is measured by the benchmark, not asserted here.
- An inotify queue overflow (IN_Q_OVERFLOW): fs.inotify.max_queued_events is
  lowered to 64 while the recorder creates its inotify instance (the kernel
  copies the limit into the instance at inotify_init, so it is restored right
  after), then 300 cgroups are made in each of two hierarchies at once. The
  overflow is counted (drop_reason 'inotify_overflow', in recorder_stats and the
  manifest) and the rescan leaves no cgroup out, nor reports one twice.
- Back-pressure: with room for 50 rows between polls, rows beyond it wait in the
  kernel queue; what overflowed there is counted and recovered by rescans.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kernelutil import (
    CGROUP_ROOT,
    record_during,
    require,
    require_root,
    rmdir_tree,
    unique_name,
    v1_controller_dir,
)
from nodetape.recorder.source import RecordContext

from bench.bench_storm import HIERARCHIES, ROUNDS, record_storm, storm_paths
from nodetape.tape.reader import connect, open_tapes

pytestmark = pytest.mark.kernel

MAX_QUEUED = Path("/proc/sys/fs/inotify/max_queued_events")
UNIFIED = CGROUP_ROOT / "unified"


@contextlib.contextmanager
def storm_bases(prefix: str, controllers: tuple[str, ...]):
    """One fresh cgroup per hierarchy (cgroup2 first, then the v1 ones holding `controllers`),
    yielded as {hierarchy name: path} with their name; removed with everything below afterwards."""
    require_root()
    require(UNIFIED.is_dir(), "no cgroup2 hierarchy at /sys/fs/cgroup/unified")
    v1 = [v1_controller_dir(c) for c in controllers]
    require(all(d is not None for d in v1), f"no v1 {', '.join(controllers)} hierarchies")
    name = unique_name(prefix)
    bases = {"unified": UNIFIED / name} | {d.name: d / name for d in v1}
    for b in bases.values():
        b.mkdir()
    try:
        yield name, bases
    finally:
        for b in bases.values():
            rmdir_tree(b)


@contextlib.contextmanager
def inotify_queue_of(size: int):
    """fs.inotify.max_queued_events = size until `restore()` is called (or the block ends).

    The kernel copies the limit into an instance at inotify_init, so a caller restores it as
    soon as the recorder has its instance: nobody else on the machine gets the small queue."""
    require(MAX_QUEUED.exists(), "no fs.inotify.max_queued_events")
    original = MAX_QUEUED.read_text()
    lock = threading.Lock()

    def restore():
        with lock:
            MAX_QUEUED.write_text(original)

    MAX_QUEUED.write_text(str(size))
    try:
        yield restore
    finally:
        restore()
    assert MAX_QUEUED.read_text() == original


def make_then_remove(bases: dict[str, Path], n: int, pause_s: float, holding=None) -> None:
    """cg0..cg{n-1} in every base as fast as possible (under `holding`, a lock, if given),
    then, `pause_s` later, their removal."""
    with holding or contextlib.nullcontext():
        for i in range(n):
            for b in bases.values():
                os.mkdir(b / f"cg{i}")
    time.sleep(pause_s)
    for i in range(n):
        for b in bases.values():
            os.rmdir(b / f"cg{i}")


def record_cgroup_source(out: Path, seconds: float, storm: Callable[[RecordContext], None]) -> dict:
    """Record the `cgroup` source while storm(ctx) runs, once the recorder has its inotify tree."""
    ctx = RecordContext(cgroup_root=CGROUP_ROOT, interval_ns=250_000_000)

    def run():
        deadline = time.monotonic() + 10
        while "cgroup_tree" not in ctx.shared and time.monotonic() < deadline:
            time.sleep(0.002)
        storm(ctx)

    manifest = record_during(out, ["cgroup"], ctx, seconds, run)
    src = manifest["sources"]["cgroup"]
    assert src["status"] == "stopped", src
    return manifest


def births_and_removals(con, hier: str, name: str) -> tuple[dict[str, int], dict[str, int]]:
    """path -> how many times it was born (created or seen by a rescan) / removed, below /name."""
    born: dict[str, int] = {}
    removed: dict[str, int] = {}
    for path, kind, n in con.execute("SELECT cgroup_path, kind, count(*) FROM cgroup_events WHERE hierarchy = ? "
                                     "AND cgroup_path LIKE ? GROUP BY ALL", [hier, f"/{name}/%"]).fetchall():
        if kind in ("created", "seen"):
            born[path] = born.get(path, 0) + n
        elif kind == "removed":
            removed[path] = removed.get(path, 0) + n
    return born, removed


def assert_drops_counted(con, src: dict) -> None:
    """Whatever the source lost is counted, with a reason, the same in the manifest and recorder_stats."""
    if src["dropped"]:
        assert src["drop_reason"], src
        stats = con.execute("SELECT max(dropped) FROM recorder_stats WHERE source = 'cgroup'").fetchone()[0]
        assert stats == src["dropped"], (stats, src)


def test_storm_of_thousands_of_cgroups_misses_none(tmp_path):
    with storm_bases("nt-storm", HIERARCHIES) as (name, bases):
        manifest, storm, _ = record_storm(tmp_path / "tape", list(bases.values()), CGROUP_ROOT)
    assert storm.returncode == 0, storm.stderr[-2000:]
    src = manifest["sources"]["cgroup"]
    assert src["status"] == "stopped", src
    con = connect(open_tapes([tmp_path / "tape"]))
    assert_drops_counted(con, src)
    want = storm_paths(name)
    for hier in bases:
        born, removed = births_and_removals(con, hier, name)
        missing = want - {p for p, n in born.items() if n >= ROUNDS}
        assert not missing, (hier, len(missing), sorted(missing)[:5], src)
        assert want == {p for p, n in removed.items() if n >= ROUNDS}, (hier, src)
    # populated rows are not asserted: a cgroup removed before its cgroup.events is read
    # has none to give, and under load that is every cgroup of the storm


def test_creation_storm_overflows_the_queue_and_the_rescan_misses_nothing(tmp_path):
    n = 300
    with storm_bases("nt-overflow", ("cpu",)) as (name, bases), inotify_queue_of(64) as restore:
        def storm(ctx):
            restore()
            time.sleep(0.3)
            # The reader thread can keep up with a storm on an idle machine; holding
            # the tree's lock stands in for a reader busy elsewhere (a rescan, a GC
            # pause), so the kernel queue overflows on every run, not on some.
            make_then_remove(bases, n, 0.6, holding=ctx.shared["cgroup_tree"].locked())
            time.sleep(0.5)

        manifest = record_cgroup_source(tmp_path / "tape", 3.0, storm)

    src = manifest["sources"]["cgroup"]
    assert src["dropped"] >= 1 and src["drop_reason"] == "inotify_overflow", src
    con = connect(open_tapes([tmp_path / "tape"]))
    assert_drops_counted(con, src)
    want = {f"/{name}/cg{i}" for i in range(n)}
    for hier in bases:
        rows = con.execute("SELECT cgroup_path, kind, source FROM cgroup_events WHERE hierarchy = ? "
                           "AND cgroup_path LIKE ? ORDER BY ts_ns, seq", [hier, f"/{name}/%"]).fetchall()
        born = {}
        for path, kind, source in rows:
            if kind in ("created", "seen"):
                born.setdefault(path, (kind, source))
        # every cgroup of the storm is in the tape: created (inotify) or seen (the rescan)
        assert set(born) == want, (hier, len(born))
        assert set(born.values()) <= {("created", "inotify"), ("seen", "scan")}
        # the queue held 64 events: the rescan found the rest
        assert sum(1 for v in born.values() if v == ("seen", "scan")) > 0, hier
        # and each one's removal, from inotify or from a rescan after another overflow
        assert {p for p, k, s in rows if k == "removed" and s in ("inotify", "scan")} == want, hier
        # one birth and one removal per cgroup: the rescan reports nothing twice
        assert sum(1 for _, k, _ in rows if k in ("created", "seen")) == n
        assert sum(1 for _, k, _ in rows if k == "removed") == n


def test_rows_beyond_the_pending_bound_wait_in_the_kernel_and_an_overflow_rescan_recovers(tmp_path, monkeypatch):
    """With room for 50 rows between polls and a kernel queue of 64 events, a storm of 600
    cgroups is recorded through back-pressure and overflow rescans: none missing, none
    dropped from memory, every loss an inotify overflow that was counted."""
    from nodetape.recorder.sources import cgroup_inotify

    monkeypatch.setattr(cgroup_inotify, "_MAX_PENDING", 50)
    n = 300
    with storm_bases("nt-pressure", ("cpu",)) as (name, bases), inotify_queue_of(64) as restore:
        def storm(ctx):
            restore()
            time.sleep(0.3)
            make_then_remove(bases, n, 0.8)

        manifest = record_cgroup_source(tmp_path / "tape", 4.0, storm)

    src = manifest["sources"]["cgroup"]
    # whatever was lost was lost in the kernel queue, counted, and recovered by a rescan
    assert src["drop_reason"] in (None, "inotify_overflow"), src
    con = connect(open_tapes([tmp_path / "tape"]))
    want = {f"/{name}/cg{i}" for i in range(n)}
    for hier in bases:
        born, removed = births_and_removals(con, hier, name)
        assert set(born) == want and set(removed) == want, (hier, src)
        assert sum(born.values()) == n  # nothing reported twice
