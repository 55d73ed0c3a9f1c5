"""Every table of a tape, declared as data.

One `Table` per contract table (DESIGN.md). Each column carries its Arrow type,
its unit and one sentence of meaning; the pyarrow schema, the Parquet field
metadata, `nodetape schema` and docs/schema.md are all generated from here.

Conventions (STYLE.md, principles 1 and 2):
- a value the kernel did not give is NULL, never 0; sentinels such as `max`
  are spelled out in the column's doc;
- counters are stored raw and cumulative, as the kernel reports them; rates
  and percentages are derived in SQL;
- a column whose unit is `boottime_ns` is a point on CLOCK_BOOTTIME; the tape
  reader adds a TIMESTAMP twin named without the `_ns` suffix.
"""

from __future__ import annotations

import functools

from dataclasses import dataclass, field

import pyarrow as pa

BOOTTIME_NS = "boottime_ns"

# Dictionary-encoded strings: low-cardinality text (paths, kinds, comms)
# repeats on almost every row; dictionaries keep batches and parts small.
_dict_str = pa.dictionary(pa.int32(), pa.string())


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    unit: str
    doc: str
    nullable: bool = True

    def field(self) -> pa.Field:
        return pa.field(
            self.name,
            self.type,
            nullable=self.nullable,
            metadata={"unit": self.unit, "doc": self.doc},
        )


@dataclass(frozen=True)
class Table:
    name: str
    doc: str
    time_column: str
    columns: tuple[Column, ...]
    order_columns: tuple[str, ...] = field(default=())

    @functools.cached_property  # built once: every batch a source makes asks for it (43 us to build)
    def schema(self) -> pa.Schema:
        return pa.schema(
            [c.field() for c in self.columns],
            metadata={"table": self.name, "doc": self.doc, "time_column": self.time_column},
        )

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def time_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.unit == BOOTTIME_NS]


def C(name, type_, unit, doc, nullable=True) -> Column:  # noqa: N802 - table-like declarations read better short
    return Column(name, type_, unit, doc, nullable)


TS = C("ts_ns", pa.int64(), BOOTTIME_NS, "When it happened or was read, CLOCK_BOOTTIME.", False)
SEQ = C("seq", pa.int64(), "count", "Per-table sequence number in recording order; breaks ties on ts_ns.", False)


def SOURCE(names: str) -> Column:  # noqa: N802
    return C("source", _dict_str, "name", f"Which recorder source produced the row ({names}).", False)


K8S = (
    C("pod_uid", _dict_str, "uuid", "Kubernetes pod UID parsed from the cgroup path (dashes restored); NULL outside Kubernetes."),
    C("container_id", _dict_str, "hex", "Container id parsed from the cgroup path; NULL for pod-level and non-container cgroups."),
    C("qos_class", _dict_str, "name", "Kubernetes QoS class from the cgroup path: guaranteed, burstable or besteffort."),
    C("runtime", _dict_str, "name", "Container runtime from the cgroup path: containerd, cri-o or docker; NULL when the path does not say."),
)

CGROUP_KEY = (
    C("hierarchy", _dict_str, "name", "The hierarchy: 'unified' for cgroup2, else the v1 controller mount name (cpu, memory, pids, ...).", False),
    C("cgroup_path", _dict_str, "path", "Path of the cgroup relative to its hierarchy root, starting with '/'.", False),
    C("cgroup_id", pa.uint64(), "id", "Kernel cgroup id: the inode number of the cgroup directory (what bpf_get_current_cgroup_id returns on cgroup2)."),
)

TABLES: tuple[Table, ...] = (
    Table(
        "cgroup_events",
        "One row per cgroup lifecycle event, from inotify on cgroupfs or from cgroup tracepoints.",
        "ts_ns",
        (
            TS, SEQ, SOURCE("inotify, scan, ebpf; poll: a v1 cgroup.procs re-read found it unpopulated"),
            C("kind", _dict_str, "name", "seen (existed at start or found by a rescan), created, removed, populated, unpopulated, frozen, thawed, oom, oom_kill, memory_high, memory_max, attach, release.", False),
            *CGROUP_KEY,
            C("hierarchy_id", pa.int32(), "id", "Kernel hierarchy id (ebpf rows; 0 is cgroup2)."),
            C("pid", pa.int32(), "pid", "Process that was attached (attach rows)."),
            C("comm", _dict_str, "name", "Task name of the attached process (attach rows)."),
            C("count", pa.int64(), "count", "For oom, oom_kill, memory_high, memory_max: how much the memory.events counter grew since the previous read."),
            *K8S,
        ),
    ),
    Table(
        "cgroup_samples",
        "One row per cgroup per sampling interval: CPU, throttling, memory and pids counters as the kernel reports them.",
        "ts_ns",
        (
            TS,
            *CGROUP_KEY,
            C("cpu_usage_usec", pa.int64(), "usec", "Cumulative CPU time used (v2 cpu.stat usage_usec; v1 cpuacct.usage / 1000)."),
            C("nr_periods", pa.int64(), "count", "Cumulative CFS enforcement periods that elapsed with the cgroup runnable (cpu.stat nr_periods)."),
            C("nr_throttled", pa.int64(), "count", "Cumulative periods in which the cgroup was throttled (cpu.stat nr_throttled)."),
            C("throttled_usec", pa.int64(), "usec", "Cumulative time throttled (v2 throttled_usec; v1 throttled_time / 1000)."),
            C("cpu_quota_usec", pa.int64(), "usec", "CFS quota per period (cpu.max or cpu.cfs_quota_us); NULL means 'max', no limit."),
            C("cpu_period_usec", pa.int64(), "usec", "CFS period (cpu.max or cpu.cfs_period_us)."),
            C("memory_current", pa.int64(), "bytes", "Memory charged to the cgroup (memory.current or memory.usage_in_bytes)."),
            C("memory_max", pa.int64(), "bytes", "Memory limit (memory.max or memory.limit_in_bytes); NULL means 'max' or the v1 no-limit value."),
            C("pids_current", pa.int64(), "count", "Number of tasks (pids.current)."),
            C("nr_procs", pa.int64(), "count", "Number of processes listed in cgroup.procs."),
            *K8S,
        ),
    ),
    Table(
        "psi_samples",
        "One row per scope and resource per interval: Pressure Stall Information as the kernel reports it.",
        "ts_ns",
        (
            TS,
            C("scope", _dict_str, "name", "'system' for /proc/pressure, else the cgroup path (relative to the cgroup2 root).", False),
            C("resource", _dict_str, "name", "cpu, memory, io or irq.", False),
            C("some_avg10", pa.float64(), "percent", "Share of wall time in which at least one task stalled, 10 s average."),
            C("some_avg60", pa.float64(), "percent", "Same, 60 s average."),
            C("some_avg300", pa.float64(), "percent", "Same, 300 s average."),
            C("some_total_usec", pa.int64(), "usec", "Cumulative 'some' stall time."),
            C("full_avg10", pa.float64(), "percent", "Share of wall time in which all non-idle tasks stalled, 10 s average; NULL where the kernel has no 'full' line."),
            C("full_avg60", pa.float64(), "percent", "Same, 60 s average."),
            C("full_avg300", pa.float64(), "percent", "Same, 300 s average."),
            C("full_total_usec", pa.int64(), "usec", "Cumulative 'full' stall time."),
        ),
    ),
    Table(
        "psi_events",
        "One row per PSI trigger firing (a kernel trigger registered with write + poll(POLLPRI)).",
        "ts_ns",
        (
            TS, SEQ,
            C("scope", _dict_str, "name", "'system' or the cgroup path the trigger was registered on.", False),
            C("resource", _dict_str, "name", "cpu, memory, io or irq.", False),
            C("kind", _dict_str, "name", "some or full.", False),
            C("stall_usec", pa.int64(), "usec", "Stall threshold of the trigger.", False),
            C("window_usec", pa.int64(), "usec", "Window of the trigger.", False),
            C("total_usec", pa.int64(), "usec", "Cumulative stall time of that kind read right after the firing."),
        ),
    ),
    Table(
        "processes",
        "One row per process event: fork, exec, exit (eBPF lineage) or seen (found in a cgroup by /proc scans).",
        "ts_ns",
        (
            TS, SEQ, SOURCE("ebpf, proc"),
            C("event", _dict_str, "name", "fork, exec, exit or seen.", False),
            C("pid", pa.int32(), "pid", "Thread id (kernel pid) the event is about; for fork, the child.", False),
            C("tgid", pa.int32(), "pid", "Process id (thread group) of pid."),
            C("ppid", pa.int32(), "pid", "Parent: for fork the parent's pid, for seen the PPid from /proc/PID/status."),
            C("parent_tgid", pa.int32(), "pid", "For fork, the parent's process id."),
            C("comm", _dict_str, "name", "Task name (16 bytes at most)."),
            C("filename", pa.string(), "path", "exec: the executed file; seen: argv[0] from /proc/PID/cmdline."),
            C("exit_code", pa.int32(), "code", "exit: exit status as the kernel encodes it (code << 8 | signal)."),
            C("cgroup_id", pa.uint64(), "id", "cgroup2 id of the task at the event."),
            C("cgroup_path", _dict_str, "path", "For seen rows: the cgroup the process was found in."),
        ),
    ),
    Table(
        "namespaces",
        "One row per process and namespace type, when the process is first seen.",
        "ts_ns",
        (
            TS,
            C("pid", pa.int32(), "pid", "Process id; 1 stands for the host's namespaces, recorded at start.", False),
            C("ns_type", _dict_str, "name", "cgroup, ipc, mnt, net, pid, pid_for_children, time, time_for_children, user, uts.", False),
            C("ns_inode", pa.uint64(), "id", "Inode number of /proc/PID/ns/TYPE: equal inodes mean the same namespace.", False),
        ),
    ),
    Table(
        "syscall_counts",
        "One row per cgroup and syscall per interval, counted in the kernel on raw_syscalls:sys_enter.",
        "interval_end_ns",
        (
            C("interval_start_ns", pa.int64(), BOOTTIME_NS, "Start of the counting interval.", False),
            C("interval_end_ns", pa.int64(), BOOTTIME_NS, "End of the counting interval (when the kernel map was drained).", False),
            C("cgroup_id", pa.uint64(), "id", "cgroup2 id of the calling task.", False),
            C("syscall_nr", pa.int32(), "number", "Syscall number on this architecture.", False),
            C("syscall_name", _dict_str, "name", "Syscall name for this architecture; NULL when unknown."),
            C("count", pa.int64(), "count", "Calls entered during the interval.", False),
        ),
    ),
    Table(
        "syscall_latency",
        "One row per cgroup, syscall and log2 latency bucket per interval.",
        "interval_end_ns",
        (
            C("interval_start_ns", pa.int64(), BOOTTIME_NS, "Start of the interval.", False),
            C("interval_end_ns", pa.int64(), BOOTTIME_NS, "End of the interval.", False),
            C("cgroup_id", pa.uint64(), "id", "cgroup2 id of the calling task.", False),
            C("syscall_nr", pa.int32(), "number", "Syscall number.", False),
            C("syscall_name", _dict_str, "name", "Syscall name; NULL when unknown."),
            C("bucket_ns", pa.int64(), "ns", "Lower bound of the log2 bucket: latencies in [bucket_ns, 2*bucket_ns).", False),
            C("count", pa.int64(), "count", "Calls whose enter-to-exit time fell in the bucket.", False),
        ),
    ),
    Table(
        "file_opens",
        "One row per open/openat/openat2 that passed the filter.",
        "ts_ns",
        (
            TS, SEQ,
            C("pid", pa.int32(), "pid", "Thread id (kernel pid) of the caller.", False),
            C("tgid", pa.int32(), "pid", "Process id (thread group id) of the caller."),
            C("cgroup_id", pa.uint64(), "id", "cgroup2 id of the task."),
            C("comm", _dict_str, "name", "Task name (comm) of the caller."),
            C("path", pa.string(), "path", "Path argument as passed (possibly relative)."),
            C("flags", pa.int32(), "flags", "open(2) flags."),
            C("ret", pa.int32(), "fd or -errno", "Result: a file descriptor, or a negative errno."),
        ),
    ),
    Table(
        "packet_drops",
        "One row per skb:kfree_skb with a drop reason.",
        "ts_ns",
        (
            TS, SEQ,
            C("location", _dict_str, "symbol", "Kernel function that dropped the packet, symbolized (function+offset)."),
            C("location_addr", pa.uint64(), "address", "Raw kernel address of the drop location."),
            C("reason", _dict_str, "name", "Drop reason name (enum skb_drop_reason)."),
            C("reason_code", pa.int32(), "number", "Drop reason number."),
            C("protocol", pa.int32(), "ethertype", "skb->protocol in host order (0x0800 IPv4, 0x86dd IPv6)."),
            C("ifindex", pa.int32(), "index", "Interface index of the skb's device; NULL when none."),
            C("pid", pa.int32(), "pid", "Task running when the drop happened (may be unrelated in softirq)."),
            C("cgroup_id", pa.uint64(), "id", "cgroup2 id of that task."),
        ),
    ),
    Table(
        "mounts",
        "One row per mount: a snapshot at start and one row per change, from /proc/self/mountinfo.",
        "ts_ns",
        (
            TS,
            C("event", _dict_str, "name", "snapshot, added or removed.", False),
            C("mount_id", pa.int32(), "id", "Mount id (mountinfo field 1).", False),
            C("parent_id", pa.int32(), "id", "Parent mount id."),
            C("major_minor", _dict_str, "dev", "st_dev of files in the mount, major:minor."),
            C("root", pa.string(), "path", "Root of the mount within its filesystem."),
            C("mountpoint", pa.string(), "path", "Mount point relative to the process root.", False),
            C("fstype", _dict_str, "name", "Filesystem type."),
            C("source", pa.string(), "name", "Mount source (device or name)."),
            C("options", pa.string(), "text", "Per-mount options."),
            C("super_options", pa.string(), "text", "Per-superblock options."),
        ),
    ),
    Table(
        "net_interfaces",
        "One row per network interface: a snapshot at start and one row per change, from /sys/class/net.",
        "ts_ns",
        (
            TS,
            C("event", _dict_str, "name", "snapshot, added, removed or changed.", False),
            C("ifname", _dict_str, "name", "Interface name, e.g. eth0.", False),
            C("ifindex", pa.int32(), "index", "Kernel interface index."),
            C("operstate", _dict_str, "name", "RFC 2863 operational state (up, down, unknown, ...)."),
            C("mtu", pa.int32(), "bytes", "Maximum transmission unit."),
            C("address", _dict_str, "mac", "Link-layer address."),
            C("rx_bytes", pa.int64(), "bytes", "Cumulative bytes received."),
            C("tx_bytes", pa.int64(), "bytes", "Cumulative bytes sent."),
            C("rx_packets", pa.int64(), "count", "Cumulative packets received."),
            C("tx_packets", pa.int64(), "count", "Cumulative packets sent."),
            C("rx_dropped", pa.int64(), "count", "Cumulative received packets dropped."),
            C("tx_dropped", pa.int64(), "count", "Cumulative sent packets dropped."),
        ),
    ),
    Table(
        "containers",
        "One row per container (pod sandbox or container) seen by its runtime: the CRI annotations of the OCI spec the runtime keeps in its state folder, read when the container's cgroup appears.",
        "ts_ns",
        (
            TS, SEQ, SOURCE("how the container's cgroup was found: inotify (created while recording) or scan (existed at start, or found by a rescan)"),
            C("container_id", _dict_str, "hex", "Container id as the runtime names it (the name of its cgroup and of its state folder).", False),
            C("container_type", _dict_str, "name", "sandbox (the pod's infra/pause container) or container, from the spec's annotations; NULL when the spec does not say."),
            C("pod_uid", _dict_str, "uuid", "Kubernetes pod UID from the spec's annotations (a plain string, as the runtime wrote it)."),
            C("pod_name", _dict_str, "name", "Kubernetes pod name from the spec's annotations."),
            C("pod_namespace", _dict_str, "name", "Kubernetes namespace of the pod from the spec's annotations."),
            C("container_name", _dict_str, "name", "Container name in the pod spec; NULL for a containerd sandbox (CRI-O names it POD)."),
            C("image", _dict_str, "name", "Image name the container was created from, from the spec's annotations; NULL for a containerd sandbox."),
            C("sandbox_id", _dict_str, "hex", "Id of the pod's sandbox (equal to container_id for the sandbox itself)."),
            C("runtime", _dict_str, "name", "containerd or cri-o: whose state folder held the spec.", False),
            C("cgroup_path", _dict_str, "path", "The container's cgroup, relative to its hierarchy root (from the cgroup tree, not from the spec).", False),
        ),
    ),
    Table(
        "recorder_stats",
        "One row per source per interval: what the recorder saw, lost and cost. Drops are data.",
        "ts_ns",
        (
            TS,
            C("source", _dict_str, "name", "Source name, or 'recorder' for the process as a whole.", False),
            C("events", pa.int64(), "count", "Cumulative rows produced by the source since it started."),
            C("dropped", pa.int64(), "count", "Cumulative events lost (ring buffer full, inotify overflow, rate limit, writer back-pressure)."),
            C("drop_reason", _dict_str, "name", "What the dropped counter counts, e.g. ringbuf_full, inotify_overflow, rate_limit."),
            C("lag_ns", pa.int64(), "ns", "How late the source's last poll ran behind its schedule."),
            C("recorder_cpu_usec", pa.int64(), "usec", "Cumulative CPU time of the recorder process (user + system)."),
            C("recorder_rss_bytes", pa.int64(), "bytes", "Resident set size of the recorder process."),
            C("push_parts", pa.int64(), "count", "With record --push, on the recorder's row: cumulative sealed parts pushed to the fleet store; NULL when not pushing."),
            C("push_bytes", pa.int64(), "bytes", "With record --push, on the recorder's row: cumulative bytes of parts pushed to the fleet store; NULL when not pushing."),
            C("push_failures", pa.int64(), "count", "With record --push, on the recorder's row: cumulative failed push attempts (store unreachable), each retried with backoff; NULL when not pushing."),
            C("push_pending", pa.int64(), "count", "With record --push, on the recorder's row: sealed parts queued and not yet in the store; NULL when not pushing."),
        ),
    ),
)
