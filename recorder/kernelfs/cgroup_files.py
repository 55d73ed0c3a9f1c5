"""Pure parsers of cgroupfs files (v1 and v2), tested on literal strings.

Every value is optional: a key the kernel did not print is None, never 0. The
'no limit' sentinels ('max' in v2, -1 for cfs_quota_us, the page-rounded
LLONG_MAX of v1 memory limits) become None, as the schema documents.
"""

from __future__ import annotations

# v1 memory.limit_in_bytes with no limit: PAGE_COUNTER_MAX * PAGE_SIZE, i.e. LLONG_MAX
# rounded down to a page (9223372036854771712 with 4 KiB pages). Anything at or
# above 2**62 cannot be a real limit on any machine, whatever the page size.
V1_NO_LIMIT_FLOOR = 1 << 62

CPU_STAT_KEYS = ("cpu_usage_usec", "nr_periods", "nr_throttled", "throttled_usec")


def parse_flat_keyed(text: str) -> dict[str, int]:
    """'key value' lines (cpu.stat, cgroup.events, memory.events, memory.stat) -> {key: int}."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if not value:
            continue
        try:
            out[key] = int(value)
        except ValueError:
            continue
    return out


def parse_cpu_stat(text: str) -> dict[str, int | None]:
    """cpu.stat of v2 (usage_usec, throttled_usec) or v1 (throttled_time in ns) -> schema columns.

    v1 cpu.stat has no usage (that is cpuacct.usage): cpu_usage_usec is None there.
    """
    kv = parse_flat_keyed(text)
    throttled = kv.get("throttled_usec")
    if throttled is None and "throttled_time" in kv:
        throttled = kv["throttled_time"] // 1000
    return {
        "cpu_usage_usec": kv.get("usage_usec"),
        "nr_periods": kv.get("nr_periods"),
        "nr_throttled": kv.get("nr_throttled"),
        "throttled_usec": throttled,
    }


_CPU_STAT_BYTES = (b"usage_usec", b"nr_periods", b"nr_throttled", b"throttled_usec")


def cpu_stat_values(data: bytes) -> tuple[int | None, int | None, int | None, int | None]:
    """cpu.stat as read (bytes) -> (cpu_usage_usec, nr_periods, nr_throttled, throttled_usec), the
    values parse_cpu_stat gives, by bytes operations: it runs for every cgroup every interval."""
    t = data.split()
    if len(t) % 2 == 0:  # 'key value' lines, as the kernel prints them
        kv = dict(zip(t[::2], t[1::2]))
        try:
            usage, periods, throttled, usec = (int(kv[k]) if k in kv else None for k in _CPU_STAT_BYTES)
            if usec is None and b"throttled_time" in kv:
                usec = int(kv[b"throttled_time"]) // 1000  # v1: nanoseconds
            return usage, periods, throttled, usec
        except ValueError:
            pass
    s = parse_cpu_stat(data.decode(errors="replace"))  # anything else: line by line, bad lines skipped
    return s["cpu_usage_usec"], s["nr_periods"], s["nr_throttled"], s["throttled_usec"]


def parse_cpu_max(text: str) -> tuple[int | None, int | None]:
    """v2 cpu.max 'QUOTA PERIOD' -> (quota_usec or None for 'max', period_usec)."""
    parts = text.split()
    if not parts:
        return None, None
    quota = None if parts[0] == "max" else int(parts[0])
    period = int(parts[1]) if len(parts) > 1 else None
    return quota, period


def parse_cfs_quota(text: str) -> int | None:
    """v1 cpu.cfs_quota_us: -1 means no limit -> None."""
    v = parse_int(text)
    return None if v is None or v < 0 else v


def parse_int(text: str) -> int | None:
    """A file holding one integer (cpuacct.usage, pids.current, memory.current, ...); None if empty."""
    s = text.strip()
    if not s:
        return None
    try:
        return int(s)
    except ValueError:
        return None


def parse_memory_limit(text: str) -> int | None:
    """memory.max ('max' -> None) or v1 memory.limit_in_bytes (the huge no-limit value -> None)."""
    s = text.strip()
    if s == "max" or not s:
        return None
    v = int(s)
    return None if v >= V1_NO_LIMIT_FLOOR else v


def parse_cgroup_events(text: str) -> dict[str, int]:
    """v2 cgroup.events: {'populated': 0|1, 'frozen': 0|1} (frozen only on kernels with the freezer)."""
    return parse_flat_keyed(text)


def parse_memory_events(text: str) -> dict[str, int]:
    """v2 memory.events counters: low, high, max, oom, oom_kill, oom_group_kill."""
    return parse_flat_keyed(text)


def parse_oom_control(text: str) -> dict[str, int]:
    """v1 memory.oom_control: oom_kill_disable, under_oom, oom_kill (counter, kernels >= 4.13)."""
    return parse_flat_keyed(text)


def count_procs(data: bytes) -> int:
    """cgroup.procs content (one pid per line) -> number of processes."""
    return data.count(b"\n")


def cpuacct_usage_usec(text: str) -> int | None:
    """v1 cpuacct.usage is nanoseconds; the tape stores usec."""
    v = parse_int(text)
    return None if v is None else v // 1000
