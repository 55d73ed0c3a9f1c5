"""The idle recorder's bytes parsers and column builders on literal inputs (docs/idle.md)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from nodetape.recorder.columns import IdentityColumns, same_type
from nodetape.recorder.kernelfs import cgroup_files as cf
from nodetape.recorder.kernelfs.psi import PSI_KEYS, parse_psi, psi_values
from nodetape.recorder.loop import _next_tick
from nodetape.recorder.sources.net import iface_values
from unit import test_kernelfs_cgroup as _cgroup_texts

# the same kernel texts as the text parsers' tests, as the bytes the new parsers read
V2_CPU_STAT = _cgroup_texts.V2_CPU_STAT.encode()
V1_CPU_STAT = b"nr_periods 50\nnr_throttled 45\nthrottled_time 3600123456\nnr_bursts 0\nburst_time 0\n"


@pytest.mark.parametrize("data", [
    V2_CPU_STAT, V1_CPU_STAT, b"usage_usec 5\nuser_usec 3\nsystem_usec 2\n", b"",
    b"usage_usec 5\nbroken line here\nnr_periods 2\n",  # odd token count: line by line, as parse_cpu_stat
    b"usage_usec x\nnr_periods 2\n",  # a value that is not a number: skipped, as parse_cpu_stat
])
def test_cpu_stat_values_match_the_text_parser(data):
    s = cf.parse_cpu_stat(data.decode())
    assert cf.cpu_stat_values(data) == (s["cpu_usage_usec"], s["nr_periods"], s["nr_throttled"], s["throttled_usec"])


def test_cpu_stat_values_literal():
    assert cf.cpu_stat_values(V2_CPU_STAT) == (1234567, 120, 110, 8800000)
    assert cf.cpu_stat_values(V1_CPU_STAT) == (None, 50, 45, 3600123)  # v1: ns -> usec, no usage


PSI_FULL = b"some avg10=1.50 avg60=3.55 avg300=16.27 total=1637329175\nfull avg10=0.00 avg60=0.04 avg300=0.44 total=55995966\n"
PSI_SOME = b"some avg10=0.12 avg60=0.00 avg300=0.00 total=42\n"  # cpu pressure before 5.13: no full line


@pytest.mark.parametrize("data", [PSI_FULL, PSI_SOME, b"", b"other avg10=9.99 total=1\nfull avg10=1.00 total=7\n"])
def test_psi_values_match_the_text_parser(data):
    p = parse_psi(data.decode())
    assert psi_values(data) == [p[k] for k in PSI_KEYS]


def test_psi_values_literal():
    assert psi_values(PSI_FULL) == [1.5, 3.55, 16.27, 1637329175, 0.0, 0.04, 0.44, 55995966]
    assert psi_values(PSI_SOME) == [0.12, 0.0, 0.0, 42, None, None, None, None]


def test_iface_values():
    assert iface_values([b"4\n", b"up\n", b"1400\n", b"02:fc:00:00:00:01\n"]) == (4, "up", 1400, "02:fc:00:00:00:01")
    assert iface_values([b"2\n", None, b"x\n", b"\n"]) == (2, None, None, "")


def test_same_type_slices_one_conversion():
    a, b, c = same_type([[1, 2], [None, 4], [5, None]], pa.int64())
    assert (a.to_pylist(), b.to_pylist(), c.to_pylist()) == ([1, 2], [None, 4], [5, None])
    assert a.type == pa.int64()
    assert same_type([[], []], pa.float64())[1].to_pylist() == []


def test_identity_columns_kept_while_the_things_are_the_same():
    calls = []
    x, y = object(), object()
    ident = IdentityColumns("psi_samples", ("scope", "resource"))

    def values():
        calls.append(1)
        return [["system", "/a"], ["cpu", "io"]]

    first = ident.get([x, y], values)
    assert [a.to_pylist() for a in first] == [["system", "/a"], ["cpu", "io"]]
    assert first[0].type == pa.dictionary(pa.int32(), pa.string())
    assert ident.get([x, y], values) is first and len(calls) == 1
    ident.get([x], lambda: [["system"], ["cpu"]])  # another set of rows: built again
    ident.get([x, object()], values)
    assert len(calls) == 2


@pytest.mark.parametrize(("due", "now", "period", "want"), [
    (100, 100, 10, 110),  # due now: the next point
    (100, 104, 10, 110),  # a few ns late: still the grid, not now + period
    (100, 135, 10, 140),  # missed whole periods: skipped
])
def test_next_tick_stays_on_the_grid(due, now, period, want):
    assert _next_tick(due, now, period) == want


def test_vmstat_counter_finds_a_whole_line_only():
    from nodetape.recorder.kernelfs.procfs import vmstat_counter

    text = b"nr_free_pages 4623649\noom_kill 12\nxoom_kill 9\n"
    assert vmstat_counter(text, b"oom_kill") == 12
    assert vmstat_counter(text, b"nr_free_pages") == 4623649
    assert vmstat_counter(b"oom_kill 3", b"oom_kill") == 3
    assert vmstat_counter(b"xoom_kill 9\n", b"oom_kill") is None
    assert vmstat_counter(b"", b"oom_kill") is None
