"""pod_births on hand-written rows (test inputs for the SQL, not recordings).

Hybrid host: the pod and its container are created in the cpu, memory and
unified hierarchies (different cgroup ids); eBPF rows carry the unified id.
"""

from __future__ import annotations

from golden.tapes import MS, S, write_tape

import nodetape

POD = "1b2c3d4e-0000-4000-8000-00000000abcd"
CID = "a" * 64
POD_PATH = f"/kubepods/burstable/pod{POD}"
C_PATH = f"{POD_PATH}/{CID}"
UNIFIED_ID = 9001


def _ev(rows):
    keys = ("ts_ns", "source", "kind", "hierarchy", "cgroup_path", "cgroup_id", "pid", "comm", "pod_uid", "container_id")
    return {k: [r[i] for r in rows] for i, k in enumerate(keys)}


def _common_events(with_ebpf: bool):
    t0 = 10 * S
    rows = [
        # pod-level cgroup, inotify only, three hierarchies
        (t0, "inotify", "created", "cpu", POD_PATH, 100, None, None, POD, None),
        (t0 + 2 * MS, "inotify", "created", "memory", POD_PATH, 200, None, None, POD, None),
        (t0 + 3 * MS, "inotify", "created", "unified", POD_PATH, 300, None, None, POD, None),
        # the container: inotify sees it a bit late in each hierarchy
        (t0 + 50 * MS, "inotify", "created", "memory", C_PATH, 201, None, None, POD, CID),
        (t0 + 52 * MS, "inotify", "created", "cpu", C_PATH, 101, None, None, POD, CID),
        (t0 + 53 * MS, "inotify", "created", "unified", C_PATH, UNIFIED_ID, None, None, POD, CID),
        (t0 + 90 * MS, "inotify", "populated", "unified", C_PATH, UNIFIED_ID, None, None, POD, CID),
        # unrelated, non-Kubernetes cgroup: never a birth
        (t0, "inotify", "created", "cpu", "/user.slice/x", 5, None, None, None, None),
    ]
    if with_ebpf:
        rows += [
            (t0 + 48 * MS, "ebpf", "created", "cpu", C_PATH, 101, None, None, POD, CID),
            (t0 + 49 * MS, "ebpf", "created", "unified", C_PATH, UNIFIED_ID, None, None, POD, CID),
            (t0 + 60 * MS, "ebpf", "attach", "cpu", C_PATH, 101, 4242, "runc:[2:INIT]", POD, CID),
            (t0 + 61 * MS, "ebpf", "attach", "unified", C_PATH, UNIFIED_ID, 4242, "runc:[2:INIT]", POD, CID),
        ]
    return t0, rows


def _tape(tmp_path, with_ebpf: bool, syscalls: dict | None = None):
    t0, ev = _common_events(with_ebpf)
    procs = {  # a /proc scan found pid 4242 running sleep after the exec
        "ts_ns": [t0 + 300 * MS, t0 + 310 * MS],
        "source": ["proc", "proc"], "event": ["seen", "seen"], "pid": [4242, 777], "tgid": [4242, 777],
        "ppid": [4200, 1], "comm": ["sleep", "bash"], "filename": ["/bin/sleep", "bash"],
        "cgroup_path": [C_PATH, "/user.slice/x"],
    }
    if with_ebpf:
        for k, v in {"ts_ns": t0 + 70 * MS, "source": "ebpf", "event": "exec", "pid": 4242, "tgid": 4242,
                     "ppid": None, "comm": "sleep", "filename": "/bin/sleep", "cgroup_path": None}.items():
            procs[k].append(v)
        procs["cgroup_id"] = [None, None, UNIFIED_ID]
    ns_types = ["ipc", "mnt", "net", "pid", "user", "uts"]
    ns = {
        "ts_ns": [0] * 6 + [t0 + 305 * MS] * 6,
        "pid": [1] * 6 + [4242] * 6,
        "ns_type": ns_types * 2,
        "ns_inode": [1, 2, 3, 4, 5, 6] + [11, 12, 13, 14, 5, 16],  # shares only the user namespace
    }
    tables = {"cgroup_events": _ev(ev), "processes": procs, "namespaces": ns}
    if with_ebpf:
        tables["syscall_counts"] = {
            "interval_start_ns": [t0, t0, t0, t0 + S, t0, t0 + 2 * S],
            "interval_end_ns": [t0 + S, t0 + S, t0 + S, t0 + 2 * S, t0 + S, t0 + 3 * S],
            "cgroup_id": [UNIFIED_ID, UNIFIED_ID, UNIFIED_ID, UNIFIED_ID, 5, UNIFIED_ID],
            "syscall_nr": [0, 56, 9, 0, 0, 0],
            "syscall_name": ["read", "clone", "mmap", "read", "read", "read"],
            "count": [100, 3, 20, 7, 999, 1],
        }
    if syscalls is not None:
        tables["syscall_counts"] = syscalls
    return write_tape(tmp_path / "tape", tables)


def _stages(tape):
    return nodetape.open(tape).query("pod_births").to_pylist()


def test_ebpf_cascade_in_order_with_offsets_from_earliest_creation(tmp_path):
    rows = _stages(_tape(tmp_path, with_ebpf=True))
    pod = [r for r in rows if r["container_id"] is None]
    cont = [r for r in rows if r["container_id"] == CID]
    assert rows[: len(pod)] == pod, "the pod-level cgroup comes first, its containers after it"
    assert [r["stage"] for r in pod] == ["cgroup_created"]
    assert "3 hierarchies (cpu, memory, unified; first: cpu) via inotify" in pod[0]["detail"]
    assert [r["stage"] for r in cont] == [
        "cgroup_created", "process_attached", "first_syscalls", "exec", "populated", "namespaces_isolated"]
    by = {r["stage"]: r for r in cont}
    # eBPF creation wins over inotify's later reads, once for all hierarchies
    assert by["cgroup_created"]["offset_ms"] == 0
    assert by["cgroup_created"]["detail"].endswith("via ebpf")
    assert by["process_attached"]["offset_ms"] == 12.0
    assert by["process_attached"]["detail"].startswith("pid 4242 (runc:[2:INIT]) via ebpf cgroup_attach_task")
    assert by["exec"]["offset_ms"] == 22.0
    assert by["exec"]["detail"] == "pid 4242 exec /bin/sleep (comm sleep) via ebpf"
    assert by["namespaces_isolated"]["detail"].startswith("pid 4242: new ipc, mnt, net, pid, uts; shared with the host: user")
    # the first counting interval began before the cgroup and its first task: clamped to the attach
    assert by["first_syscalls"]["offset_ms"] == 12.0
    assert by["first_syscalls"]["detail"] == (
        "123 syscalls in the first second (3 clone/fork); top: read 100, mmap 20, clone 3 via ebpf")
    assert by["populated"]["offset_ms"] == 42.0
    assert all(r["cgroup_path"] == C_PATH for r in cont)
    assert all(r["host"] == "node-a" for r in rows)


def test_first_syscalls_skip_intervals_that_ended_before_the_cgroup_and_span_whole_seconds(tmp_path):
    """An interval of the id that ended before the cgroup was created (a reused id) is not its first;
    the first second here starts mid-second (500 ms intervals), so it spans two whole seconds."""
    t0 = 10 * S
    starts = [t0 - 2 * S, t0 + 700 * MS, t0 + 1200 * MS, t0 + 1700 * MS]
    rows = _stages(_tape(tmp_path, with_ebpf=True, syscalls={
        "interval_start_ns": starts, "interval_end_ns": [t + 500 * MS for t in starts],
        "cgroup_id": [UNIFIED_ID] * 4, "syscall_nr": [0, 0, 56, 0],
        "syscall_name": ["read", "read", "clone", "read"], "count": [50, 10, 2, 5],
    }))
    first = [r for r in rows if r["container_id"] == CID and r["stage"] == "first_syscalls"]
    assert [r["detail"] for r in first] == ["12 syscalls in the first second (2 clone/fork); top: read 10, clone 2 via ebpf"]
    assert first[0]["offset_ms"] == 652.0  # from the eBPF creation at t0 + 48 ms


def test_falls_back_to_inotify_and_proc_rows(tmp_path):
    rows = _stages(_tape(tmp_path, with_ebpf=False))
    cont = {r["stage"]: r for r in rows if r["container_id"] == CID}
    assert set(cont) == {"cgroup_created", "process_attached", "namespaces_isolated", "exec", "populated"}
    assert cont["cgroup_created"]["detail"] == "mkdir in 3 hierarchies (cpu, memory, unified; first: memory) via inotify"
    assert cont["process_attached"]["detail"] == "pid 4242 (sleep) via /proc scan (attached at or before)"
    assert cont["process_attached"]["offset_ms"] == 250.0
    assert cont["exec"]["detail"].endswith("via /proc scan (exec at or before)")
    assert all(r["offset_ms"] >= 0 for r in cont.values())


def test_no_births_on_a_tape_without_cgroup_events(tmp_path):
    tape = write_tape(tmp_path / "t", {"psi_samples": {"ts_ns": [1], "scope": ["system"], "resource": ["cpu"]}})
    assert _stages(tape) == []
