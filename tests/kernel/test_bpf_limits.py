"""eBPF sources at their limits: a flood beyond the consumer, no privileges, no bcc."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from kernelutil import kill_procs, require, require_root, rmdir_tree, unique_name
from test_bpf_sources import UNIFIED, record, requirements

pytestmark = pytest.mark.kernel

FLOOD_C = r"""
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
/* open/close as fast as possible until SIGTERM; print how many opens returned */
static volatile sig_atomic_t stop;
static void on_term(int s) { (void)s; stop = 1; }
int main(void) {
    signal(SIGTERM, on_term);
    long n = 0;
    while (!stop) {
        int fd = open("/etc/hostname", O_RDONLY);
        n++;
        if (fd >= 0) close(fd);
    }
    printf("%ld\n", n);
    return 0;
}
"""


def test_open_flood_is_counted_not_hidden(tmp_path):
    """A flood far beyond the consumer: every open is either a row or a counted
    drop (exactly), the recorder keeps its schedule and its memory stays bounded."""
    requirements()
    exe = tmp_path / "flood"
    src = tmp_path / "flood.c"
    src.write_text(FLOOD_C)
    # static: no ld.so opens, so the program's own count is every open in its cgroup
    r = subprocess.run(["gcc", "-O2", "-static", "-o", str(exe), str(src)], capture_output=True)
    require(r.returncode == 0, f"gcc -static failed (libc6-dev): {r.stderr.decode()[-200:]}")
    cg = UNIFIED / unique_name("nt-flood")
    cg.mkdir()
    made = {}
    try:
        def workload():
            p = subprocess.Popen([str(exe)], stdout=subprocess.PIPE,
                                 preexec_fn=lambda: open(cg / "cgroup.procs", "w").write("0"))
            time.sleep(1.5)
            p.send_signal(signal.SIGTERM)
            made["opens"] = int(p.communicate()[0])

        opts = {"cgroup_globs": [f"/{cg.name}"], "opens_rate": 0,
                # a 64 KiB ring (215 records) and 32 KiB a poll: ~2k records/s at most
                "opens_ringbuf_pages": 16, "opens_max_bytes_per_poll": 32768}
        out = tmp_path / "tape"
        manifest = record(out, ["opens", "psi"], opts, workload, interval_ns=250_000_000)
    finally:
        kill_procs(cg)
        rmdir_tree(cg)
    from nodetape.tape.reader import connect, open_tapes

    con = connect(open_tapes([out]))
    st = manifest["sources"]["opens"]
    rows = con.execute("SELECT count(*) FROM file_opens").fetchone()[0]
    assert st["drop_reason"] == "ringbuf_full"
    assert st["dropped"] > 10 * rows  # the flood was far beyond what we consumed
    assert rows + st["dropped"] == made["opens"]  # nothing lost silently
    # and per table in the manifest, with the source and its reason
    t = manifest["tables"]["file_opens"]
    assert t["dropped"] == st["dropped"] and t["drop_reasons"] == {"opens: ringbuf_full": st["dropped"]}
    stats = con.execute("SELECT dropped, recorder_rss_bytes FROM recorder_stats WHERE source = 'opens' "
                        "ORDER BY ts_ns").fetchall()
    assert len([d for d, _ in stats if d]) >= 2  # drops reported while it happened, not only at the end
    rss = [r for (r,) in con.execute("SELECT recorder_rss_bytes FROM recorder_stats WHERE source = 'recorder'"
                                     ).fetchall() if r]
    assert max(rss) - min(rss) < 64 << 20
    assert manifest["sources"]["psi"]["status"] == "stopped"


UNPRIV_SCRIPT = r"""
import json, sys
from pathlib import Path
from nodetape.recorder.loop import Recorder, RecordOptions
from nodetape.recorder.source import RecordContext
m = Recorder(RecordOptions(out=Path(sys.argv[1]), sources=sys.argv[2].split(","),
                           ctx=RecordContext(interval_ns=200_000_000), duration_ns=600_000_000)).run()
print(json.dumps(m["sources"]))
"""

BPF_SOURCES = ["syscalls", "latency", "lineage", "cgroup-tp", "opens", "drops", "throttle-probe"]


def test_unprivileged_bpf_sources_unavailable_others_record():
    require_root()
    require(subprocess.run(["which", "setpriv"], capture_output=True).returncode == 0, "needs setpriv")
    # pytest's tmp_path is under a root-only folder; nobody needs its own
    tmp = Path(tempfile.mkdtemp(prefix="nt-unpriv-"))
    tmp.chmod(0o777)
    out = tmp / "tape"
    try:
        r = _run_as_nobody(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert r.returncode == 0, r.stderr[-2000:]
    sources = json.loads(r.stdout.strip().splitlines()[-1])
    for name in BPF_SOURCES:
        assert sources[name]["status"] == "unavailable", (name, sources[name])
        assert "CAP_BPF" in sources[name]["reason"], sources[name]
    assert sources["psi"]["status"] == "stopped" and sources["psi"]["events"] > 0


def _run_as_nobody(out: Path):
    return subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all",
         sys.executable, "-c", UNPRIV_SCRIPT, str(out), ",".join(["psi", *BPF_SOURCES])],
        capture_output=True, text=True, timeout=60, cwd="/")


def test_no_bcc_bpf_sources_unavailable_others_record(tmp_path, monkeypatch):
    from nodetape.recorder.sources.bpf import env as bpf_env

    # no bcc anywhere: not importable from the venv, no distribution folder
    for k in [k for k in sys.modules if k == "bcc" or k.startswith("bcc.")]:
        monkeypatch.delitem(sys.modules, k)
    # by name: the venv's .pth loads bcc_finder by file path, so its finder's class is another object
    monkeypatch.setattr(sys, "meta_path", [f for f in sys.meta_path if type(f).__name__ != "BccFinder"])
    monkeypatch.setattr(bpf_env, "bcc_search_dirs", [str(tmp_path / "nowhere")])
    monkeypatch.setattr(sys, "path", [p for p in sys.path if "dist-packages" not in p])
    monkeypatch.setattr(bpf_env, "effective_caps", lambda *a: 1 << bpf_env.CAP_SYS_ADMIN)
    from nodetape.recorder.loop import Recorder, RecordOptions
    from nodetape.recorder.source import RecordContext

    m = Recorder(RecordOptions(out=tmp_path / "tape", sources=["psi", *BPF_SOURCES],
                               ctx=RecordContext(interval_ns=200_000_000), duration_ns=500_000_000)).run()
    for name in BPF_SOURCES:
        st = m["sources"][name]
        assert st["status"] == "unavailable" and st["reason"].startswith(bpf_env.BCC_HINT), (name, st)
    assert m["sources"]["psi"]["status"] == "stopped" and m["sources"]["psi"]["events"] > 0


def test_bpf_environment_names_headers_and_tracefs():
    requirements()
    from nodetape.recorder.sources.bpf import env as bpf_env

    env = bpf_env.bpf_environment()
    assert env["bcc_version"] and env["tracefs"]
    assert env["headers"] and Path(env["headers"]["path"]).is_dir()
    if env["headers"]["kind"] == "debian_merged":
        # the merge is a private symlink tree; /lib/modules is untouched
        assert not env["headers"]["path"].startswith("/lib/modules")
        assert os.environ["BCC_KERNEL_SOURCE"] == env["headers"]["path"]
        assert (Path(env["headers"]["path"]) / "include/generated/autoconf.h").exists()


def test_import_bcc_works_in_the_venv_and_takes_nothing_else_from_debian():
    """`import bcc` in the project's venv is Debian's python3-bpfcc (./run puts a .pth there),
    while numpy and pyarrow stay the venv's own."""
    from nodetape.recorder.sources.bpf.bcc_finder import bcc_folder

    require(sys.prefix != sys.base_prefix, "not running in a venv (use ./run test)")
    require(bcc_folder() is not None, "python3-bpfcc not installed")
    r = subprocess.run([sys.executable, "-c", "import bcc, numpy, pyarrow; print(bcc.BPF.__module__); "
                        "print(bcc.__file__); print(numpy.__file__); print(pyarrow.__file__)"],
                       capture_output=True, text=True, timeout=60, cwd="/")
    assert r.returncode == 0, r.stderr
    module, bcc_file, numpy_file, pyarrow_file = r.stdout.split()
    assert module == "bcc" and bcc_file.startswith(bcc_folder())
    assert numpy_file.startswith(sys.prefix) and pyarrow_file.startswith(sys.prefix)


def test_no_tracefs_bpf_sources_unavailable_others_record(tmp_path, monkeypatch):
    """tracefs not mounted and not mountable: every eBPF source is unavailable and says so, psi records."""
    requirements()
    from nodetape.recorder.sources.bpf import env as bpf_env

    monkeypatch.setattr(bpf_env, "TRACEFS", tmp_path / "tracing")
    monkeypatch.setattr(bpf_env, "DEBUGFS_TRACING", tmp_path / "debug" / "tracing")
    (tmp_path / "tracing").mkdir()
    monkeypatch.setattr(bpf_env, "_mount_tracefs", lambda target: "mount -t tracefs nodev: permission denied")
    from nodetape.recorder.loop import Recorder, RecordOptions
    from nodetape.recorder.source import RecordContext

    m = Recorder(RecordOptions(out=tmp_path / "tape", sources=["psi", *BPF_SOURCES],
                               ctx=RecordContext(interval_ns=200_000_000), duration_ns=500_000_000)).run()
    for name in BPF_SOURCES:
        st = m["sources"][name]
        assert st["status"] == "unavailable" and "tracefs" in st["reason"], (name, st)
        assert "CAP_SYS_ADMIN" in st["needs"], (name, st)
    assert m["sources"]["psi"]["status"] == "stopped" and m["sources"]["psi"]["events"] > 0
