"""pod_births' CRI phases, pod_startup and pod_stuck on hand-written rows (test inputs for the SQL,
not recordings): two containerd pods on one host, a veth each, one pod whose app never exec'd."""

from __future__ import annotations

from golden.tapes import MS, S, write_tape

from nodetape import api

A, B = "aaaaaaaa-0000-4000-8000-000000000001", "bbbbbbbb-0000-4000-8000-000000000002"
SB_A, APP_A, SB_B, APP_B = "1" * 64, "2" * 64, "3" * 64, "4" * 64
IDS = {SB_A: 11, APP_A: 12, SB_B: 21, APP_B: 22}


def _path(pod, cid=None):
    return f"/kubepods/burstable/pod{pod}" + (f"/{cid}" if cid else "")


def _tape(tmp_path, with_processes=True, more_procs=()):
    ev, procs = [], []
    for pod, sb, app, t in ((A, SB_A, APP_A, 10 * S), (B, SB_B, APP_B, 12 * S)):
        ev += [(t, "created", _path(pod), 1, pod, None),
               (t + 100 * MS, "created", _path(pod, sb), IDS[sb], pod, sb),
               (t + 300 * MS, "created", _path(pod, app), IDS[app], pod, app),
               (t + 310 * MS, "populated", _path(pod, app), IDS[app], pod, app)]
        procs += [(t + 150 * MS, "ebpf", "exec", 1000 + IDS[sb], "sleep", "/bin/sleep", IDS[sb], None)]
        if pod == A:
            procs += [(t + 350 * MS, "ebpf", "exec", 1000 + IDS[app], "sh", "/bin/sh", IDS[app], None)]
    procs += list(more_procs)
    tables = {
        "cgroup_events": {
            "ts_ns": [r[0] for r in ev], "seq": list(range(len(ev))), "source": ["ebpf"] * len(ev),
            "kind": [r[1] for r in ev], "hierarchy": ["unified"] * len(ev), "cgroup_path": [r[2] for r in ev],
            "cgroup_id": [r[3] for r in ev], "pod_uid": [r[4] for r in ev], "container_id": [r[5] for r in ev]},
        "containers": {
            "ts_ns": [10 * S, 10 * S, 12 * S, 12 * S], "seq": [0, 1, 2, 3], "source": ["inotify"] * 4,
            "container_id": [SB_A, APP_A, SB_B, APP_B], "container_type": ["sandbox", "container"] * 2,
            "pod_uid": [A, A, B, B], "pod_name": ["web", "web", "db", "db"], "pod_namespace": ["shop"] * 4,
            "container_name": [None, "app", None, "app"], "image": [None, "img", None, "img"],
            "sandbox_id": [SB_A, SB_A, SB_B, SB_B], "runtime": ["containerd"] * 4,
            "cgroup_path": [_path(A, SB_A), _path(A, APP_A), _path(B, SB_B), _path(B, APP_B)]},
        # the bridge appears with the first pod (not a pod's interface); each pod's veth before its sandbox
        "net_interfaces": {"ts_ns": [10 * S + 40 * MS, 10 * S + 50 * MS, 12 * S + 60 * MS],
                           "event": ["added"] * 3, "ifname": ["cni0", "vethaaaa", "vethbbbb"]},
        "recorder_stats": {"ts_ns": [15 * S], "source": ["recorder"]},
    }
    if with_processes:
        cols = ("ts_ns", "source", "event", "pid", "comm", "filename", "cgroup_id", "cgroup_path")
        tables["processes"] = {c: [p[i] for p in procs] for i, c in enumerate(cols)}
        tables["processes"].update(seq=list(range(len(procs))), tgid=tables["processes"]["pid"])
    return write_tape(tmp_path / "t", tables)


def test_pod_births_names_pods_and_their_phases(tmp_path):
    rows = api.open(_tape(tmp_path)).query("pod_births").to_pylist()
    a = [(r["container_name"], r["stage"], r["offset_ms"]) for r in rows if r["pod_uid"] == A]
    assert a == [(None, "cgroup_created", 0.0), (None, "network_ready", 50.0),
                 (None, "sandbox_created", 0.0), (None, "process_attached", 50.0), (None, "pause_exec", 50.0),
                 ("app", "cgroup_created", 0.0), ("app", "populated", 10.0), ("app", "process_attached", 50.0),
                 ("app", "exec", 50.0)]
    assert {(r["pod_namespace"], r["pod_name"]) for r in rows if r["pod_uid"] == A} == {("shop", "web")}
    net_b = [r for r in rows if r["pod_uid"] == B and r["stage"] == "network_ready"]
    assert len(net_b) == 1 and "vethbbbb" in net_b[0]["detail"]  # each veth to the pod nearest in time
    assert not any("cni0" in r["detail"] for r in rows)


def test_pod_startup_offsets_from_the_pod_cgroup(tmp_path):
    rows = {r["pod_uid"]: r for r in api.open(_tape(tmp_path)).query("pod_startup").to_pylist()}
    assert rows[A] == {"host": "node-a", "pod_uid": A, "pod_name": "web", "pod_namespace": "shop",
                       "sandbox_ms": 150.0, "network_ms": 50.0, "containers": 1, "first_exec_ms": 350.0,
                       "total_ms": 350.0}
    assert rows[B]["total_ms"] is None and rows[B]["first_exec_ms"] is None and rows[B]["network_ms"] == 60.0


def test_pod_stuck_lists_the_pod_whose_app_never_execd(tmp_path):
    rows = api.open(_tape(tmp_path)).query("pod_stuck").to_pylist()
    assert len(rows) == 1
    r = rows[0]
    assert (r["pod_uid"], r["pod_name"], r["last_stage"]) == (B, "db", "populated (app)")
    assert r["waiting_ms"] == 15_000 - 12_310


def test_pod_stuck_says_nothing_without_process_rows(tmp_path):
    assert api.open(_tape(tmp_path, with_processes=False)).query("pod_stuck").num_rows == 0


# runc 1.1's `runc init` inside B's app cgroup before any entrypoint: its parent moved it
# there (a race with what follows) while it was still 'exe' (exec'd as /proc/self/exe,
# argv[0] runc), then it re-exec'd its cloned binary through a file descriptor, then named
# itself runc:[2:INIT]; the entrypoint's execve failed. As recorded on a real containerd.
RUNC_INIT_B = [
    (12 * S + 301 * MS, "proc", "seen", 2200, "exe", "runc", IDS[APP_B], _path(B, APP_B)),
    (12 * S + 303 * MS, "ebpf", "exec", 2200, "runc", "/dev/fd/6", IDS[APP_B], None),
    (12 * S + 304 * MS, "proc", "seen", 2201, "6", "runc", IDS[APP_B], _path(B, APP_B)),
    (12 * S + 305 * MS, "ebpf", "exec", 2201, "exe", "/proc/self/exe", IDS[APP_B], None),
    (12 * S + 320 * MS, "proc", "seen", 2202, "runc:[2:INIT]", "runc", IDS[APP_B], _path(B, APP_B)),
]


def test_the_runtimes_own_init_is_not_the_entrypoints_exec(tmp_path):
    tape = api.open(_tape(tmp_path, more_procs=RUNC_INIT_B))
    rows = tape.query("pod_stuck").to_pylist()
    assert [(r["pod_uid"], r["last_stage"]) for r in rows] == [(B, "populated (app)")]
    assert not [r for r in tape.query("pod_births").to_pylist() if r["pod_uid"] == B and r["stage"] == "exec"]
    startup = {r["pod_uid"]: r for r in tape.query("pod_startup").to_pylist()}
    assert startup[B]["first_exec_ms"] is None and startup[A]["first_exec_ms"] == 350.0


def test_a_proc_scan_still_finds_an_entrypoint_the_runtime_started(tmp_path):
    # B's app did start, seen only by a /proc scan: its runc rows before it do not hide it
    ran = (12 * S + 400 * MS, "proc", "seen", 2202, "sh", "/bin/sh", IDS[APP_B], _path(B, APP_B))
    tape = api.open(_tape(tmp_path, more_procs=RUNC_INIT_B + [ran]))
    assert tape.query("pod_stuck").num_rows == 0
    b = [r for r in tape.query("pod_births").to_pylist() if r["pod_uid"] == B and r["stage"] == "exec"]
    assert [(r["container_name"], r["offset_ms"]) for r in b] == [("app", 100.0)]
