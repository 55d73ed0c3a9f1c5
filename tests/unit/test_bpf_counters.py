"""The vectorized interval deltas of the eBPF counters (counters.py, slots.py) on literal inputs."""

from __future__ import annotations

import numpy as np

from nodetape.recorder.sources.bpf.counters import counter_deltas, dead_mask, sorted_by_key
from nodetape.recorder.sources.bpf.slots import changed_cells, take_growth
from nodetape.recorder.sources.bpf.syscalls import KEY

RAW = np.dtype(f"V{KEY.itemsize}")


def keys(*pairs) -> np.ndarray:
    k = np.zeros(len(pairs), dtype=KEY)
    k["cgid"] = [c for c, _ in pairs]
    k["nr"] = [n for _, n in pairs]
    return k.view(RAW)


def u64(*v) -> np.ndarray:
    return np.array(v, dtype=np.uint64)


def test_first_read_is_all_growth():
    d = counter_deltas(np.empty(0, RAW), u64(), keys((5, 0), (7, 1)), u64(3, 4))
    assert d.dtype == np.int64 and d.tolist() == [3, 4]


def test_growth_new_keys_and_keys_in_another_order():
    pk, pv = sorted_by_key(keys((7, 1), (5, 0), (5, 3)), u64(10, 4, 1))
    assert pk.view(KEY)["cgid"].tolist() == [5, 5, 7] and pv.tolist() == [4, 1, 10]
    # the hash walks buckets: a new key can come first and the order change; (5, 3) is gone
    d = counter_deltas(pk, pv, keys((9, 2), (7, 1), (5, 0)), u64(2, 15, 4))
    assert d.tolist() == [2, 5, 0]


def test_key_above_and_below_every_previous_key():
    pk, pv = sorted_by_key(keys((5, 1)), u64(6))
    d = counter_deltas(pk, pv, keys((1, 0), (5, 1), (2**63, 7)), u64(1, 6, 9))
    assert d.tolist() == [1, 0, 9]


def test_large_counters_subtract_exactly():
    big = 2**62 + 12345
    pk, pv = sorted_by_key(keys((1, 1)), u64(big))
    assert counter_deltas(pk, pv, keys((1, 1)), u64(big + 3)).tolist() == [3]


def test_eviction_takes_only_cgroups_absent_from_the_scan():
    cg = np.array([5, 7, 5, 9], dtype=np.uint64)
    assert dead_mask(cg, {5, 9}).tolist() == [False, True, False, False]
    assert dead_mask(cg, set()).all()


def test_changed_cells_and_growth_update_prev():
    live = np.array([[0, 3, 0], [1, 0, 0]], dtype=np.uint64)
    prev = np.array([[0, 1, 0], [0, 0, 0]], dtype=np.uint64)
    cells = changed_cells(live, prev, np.zeros(live.shape, dtype=bool))
    assert cells.tolist() == [1, 3]
    rows, cols = np.divmod(cells, 3)
    assert take_growth(live, prev, rows, cols).tolist() == [2, 1]
    assert (prev == live).all()
    assert changed_cells(live, prev, np.zeros(live.shape, dtype=bool)).size == 0


def test_merge_of_distinct_cells_only_sorts_them():
    from nodetape.recorder.sources.bpf.interval import merge
    from nodetape.recorder.sources.bpf.latency import KEY as LKEY

    k = np.zeros(4, dtype=LKEY)
    k["cgid"] = [9, 3, 3, 9]
    k["nr"] = [0, 7, 7, 0]
    k["slot"] = [2, 5, 1, 1]
    got, c = merge(k, np.array([1, 2, 3, 4], dtype=np.int64))
    assert got[["cgid", "nr", "slot"]].tolist() == [(3, 7, 1), (3, 7, 5), (9, 0, 1), (9, 0, 2)]
    assert c.tolist() == [3, 2, 4, 1]
