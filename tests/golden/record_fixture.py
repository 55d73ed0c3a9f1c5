"""Record the golden fixture tape used by the named-query golden tests.

    sudo .venv/bin/python tests/golden/record_fixture.py fixtures/tapes/runc-quota

A real recording (root, bcc, runc, busybox-static): every source below runs
while one busybox container starts under a kubelet-style cgroupsPath
(/kubepods/burstable/pod<uid>/<id>) with a 15% CPU quota, spins for 3 s and is
deleted. The container starts only once every source runs (bcc compiles for a
few seconds first), so the tape holds its whole birth and death. Then run
`NODETAPE_GOLDEN_UPDATE=1 pytest tests/golden` and review the expected files.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

from nodetape import runc
from nodetape.recorder.loop import Recorder, RecordOptions
from nodetape.recorder.source import RecordContext

SOURCES = "cgroup,samples,psi,proc,net,syscalls,lineage,cgroup-tp,drops"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--sources", default=SOURCES)
    ap.add_argument("--seconds", type=float, default=3.0)
    a = ap.parse_args()
    ctx = RecordContext(cgroup_root=Path("/sys/fs/cgroup"), interval_ns=500_000_000)
    ready = threading.Event()
    rec = Recorder(RecordOptions(out=a.out, sources=a.sources.split(","), ctx=ctx, duration_ns=int(120e9),
                                 tick_ns=50_000_000, progress=lambda r: ready.set()))
    bundle = a.out.with_name(a.out.name + "-bundle")
    c = runc.Container(bundle, cpu_quota_us=15_000)

    def work():
        ready.wait(100)
        time.sleep(0.5)
        try:
            c.start()
            time.sleep(a.seconds)
        finally:
            c.stop()
            runc.remove_pod_cgroups(Path("/sys/fs/cgroup"), c.pod_uid)
            time.sleep(0.6)
            rec.request_stop()

    th = threading.Thread(target=work)
    th.start()
    m = rec.run()
    th.join()
    import shutil
    shutil.rmtree(bundle, ignore_errors=True)
    print({k: (v["status"], v.get("reason")) for k, v in m["sources"].items()})
    print("pod", c.pod_uid, "container", c.container_id)


if __name__ == "__main__":
    main()
