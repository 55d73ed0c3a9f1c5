"""When a ring source may skip reading its drop counters (stream.py drops_still), on literal positions."""

from nodetape.recorder.sources.bpf.stream import drops_still

S = 1_000_000_000


def run(positions, window=0, interval=S):
    still, at, skips = 0, None, []
    for cons, prod in positions:
        still, at, skip = drops_still(cons, prod, still, at, window, interval)
        skips.append(skip)
    return skips


def test_an_empty_still_ring_skips_from_the_second_interval():
    assert run([(0, 0), (0, 0), (0, 0)]) == [False, True, True]


def test_any_reservation_or_unread_record_reads_the_counters():
    # moved (a record read), still, records left unread (max bytes), still at a full ring, empty again
    assert run([(0, 0), (64, 64), (64, 64), (96, 128), (96, 128), (128, 128), (128, 128)]) == [
        False, False, True, False, False, False, True]


def test_a_rate_limited_ring_needs_two_still_intervals():
    assert run([(0, 0), (8, 8), (8, 8), (8, 8), (8, 8)], window=200_000) == [False, False, False, True, True]


def test_a_rate_window_of_half_an_interval_or_more_never_skips():
    assert run([(0, 0)] * 5, window=S // 2) == [False] * 5
    assert run([(0, 0)] * 5, window=1 << 62) == [False] * 5
