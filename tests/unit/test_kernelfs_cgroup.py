"""cgroupfs parsers on literal file contents (copied from a 6.x kernel)."""

import pytest

from nodetape.recorder.kernelfs import cgroup_files as cf

V2_CPU_STAT = """usage_usec 1234567
user_usec 1000000
system_usec 234567
core_sched.force_idle_usec 0
nr_periods 120
nr_throttled 110
throttled_usec 8800000
nr_bursts 0
burst_usec 0
"""

V1_CPU_STAT = """nr_periods 50
nr_throttled 45
throttled_time 3600123456
nr_bursts 0
burst_time 0
"""


def test_cpu_stat_v2():
    assert cf.parse_cpu_stat(V2_CPU_STAT) == {
        "cpu_usage_usec": 1234567, "nr_periods": 120, "nr_throttled": 110, "throttled_usec": 8800000}


def test_cpu_stat_v1_ns_to_usec_and_no_usage():
    assert cf.parse_cpu_stat(V1_CPU_STAT) == {
        "cpu_usage_usec": None, "nr_periods": 50, "nr_throttled": 45, "throttled_usec": 3600123}


def test_cpu_stat_missing_keys_are_none():
    # v2 cpu.stat without the cpu controller enabled has only the usage lines
    assert cf.parse_cpu_stat("usage_usec 5\nuser_usec 3\nsystem_usec 2\n") == {
        "cpu_usage_usec": 5, "nr_periods": None, "nr_throttled": None, "throttled_usec": None}
    assert cf.parse_cpu_stat("") == dict.fromkeys(cf.CPU_STAT_KEYS)


@pytest.mark.parametrize(("text", "want"), [
    ("max 100000\n", (None, 100000)),
    ("15000 100000\n", (15000, 100000)),
    ("", (None, None)),
])
def test_cpu_max(text, want):
    assert cf.parse_cpu_max(text) == want


@pytest.mark.parametrize(("text", "want"), [("-1\n", None), ("15000\n", 15000), ("", None)])
def test_cfs_quota(text, want):
    assert cf.parse_cfs_quota(text) == want


@pytest.mark.parametrize(("text", "want"), [
    ("9223372036854771712\n", None),  # v1 no limit, 4 KiB pages
    ("9223372036854710272\n", None),  # v1 no limit, 64 KiB pages
    ("max\n", None),
    ("268435456\n", 268435456),
    ("0\n", 0),  # a real (if harsh) limit, not absence
])
def test_memory_limit(text, want):
    assert cf.parse_memory_limit(text) == want


def test_int_files():
    assert cf.parse_int("42\n") == 42
    assert cf.parse_int("") is None
    assert cf.parse_int("garbage") is None
    assert cf.cpuacct_usage_usec("123456789\n") == 123456
    assert cf.cpuacct_usage_usec("") is None


def test_cgroup_events():
    assert cf.parse_cgroup_events("populated 1\nfrozen 0\n") == {"populated": 1, "frozen": 0}
    # cgroup.events of the root or an older kernel lacks 'frozen'
    assert cf.parse_cgroup_events("populated 0\n") == {"populated": 0}


def test_memory_events():
    text = "low 0\nhigh 12\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n"
    assert cf.parse_memory_events(text) == {"low": 0, "high": 12, "max": 3, "oom": 1, "oom_kill": 1, "oom_group_kill": 0}


def test_oom_control_v1():
    assert cf.parse_oom_control("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")["oom_kill"] == 2


def test_count_procs():
    assert cf.count_procs(b"") == 0
    assert cf.count_procs(b"12\n345\n") == 2
