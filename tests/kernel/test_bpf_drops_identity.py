"""eBPF rows tied to Kubernetes and to the kernel's drop sites, on the real kernel:
cgroup tracepoint rows carry the pod identity of their path, and a UDP datagram to
a closed port on loopback is a packet_drops row with its reason and symbolized
location."""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid

import pytest
from test_bpf_sources import UNIFIED, record, requirements

from kernelutil import rmdir_tree

pytestmark = pytest.mark.kernel


def _closed_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nobody listens there any more
    return port


def test_tracepoint_identity_and_udp_drop(tmp_path):
    requirements()
    pod_uid, cid = str(uuid.uuid4()), uuid.uuid4().hex
    base = UNIFIED / "kubepods"
    existed = base.exists()
    path = base / "besteffort" / f"pod{pod_uid}" / cid
    port = _closed_udp_port()

    longer = base / "besteffort" / f"pod{pod_uid}" / ("x" * 120)

    def workload():
        # the pod's container first, into an empty ring buffer: the burst below may fill the
        # ring faster than a poll drains it (counted as ringbuf_full), and must not cost these rows
        path.mkdir(parents=True)
        path.rmdir()
        # long paths, then shorter ones, for more than a lap of the ring buffer: a reserved
        # record holds the bytes of the records of the previous lap, and none may follow a NUL
        for i in range(1500):
            p = longer if i % 2 else longer.with_name(f"s{i}")
            p.mkdir(parents=True)
            p.rmdir()
        # from another process: the recorder ignores its own pid in the kernel
        subprocess.run([sys.executable, "-c", "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                        f"for _ in range(3): s.sendto(b'nodetape', ('127.0.0.1', {port}))"], check=True)

    try:
        manifest = record(tmp_path / "tape", ["cgroup-tp", "drops"], {}, workload)
    finally:
        rmdir_tree(base / "besteffort" / f"pod{pod_uid}")
        if not existed:
            rmdir_tree(base)
    # the manifest says what the programs ran on: bcc, tracefs, which kernel headers
    env = manifest["sources"]["drops"]["environment"]
    assert env["bcc_version"] and env["tracefs"] and env["headers"]["path"]
    from nodetape.tape.reader import connect, open_tapes

    con = connect(open_tapes([tmp_path / "tape"]))
    rows = con.execute(
        "SELECT kind, pod_uid, container_id, qos_class FROM cgroup_events WHERE source = 'ebpf' "
        "AND cgroup_path = ? ORDER BY seq", [f"/kubepods/besteffort/pod{pod_uid}/{cid}"]).fetchall()
    assert ("created", pod_uid, cid, "besteffort") in rows
    assert ("removed", pod_uid, cid, "besteffort") in rows
    assert con.execute("SELECT count(*) FROM cgroup_events WHERE source = 'ebpf' AND "
                       "(contains(cgroup_path, chr(0)) OR contains(coalesce(comm, ''), chr(0)))").fetchone() == (0,)
    drops = con.execute("SELECT reason, location, protocol, ifindex FROM packet_drops "
                        "WHERE reason = 'NO_SOCKET' AND location LIKE '%udp%'").fetchall()
    assert len(drops) >= 3, con.execute("SELECT reason, location FROM packet_drops").fetchall()
    assert all(p == 0x0800 and i == 1 for _, _, p, i in drops)  # IPv4, on lo
