import pytest

from nodetape.core.durations import format_duration_ns, parse_duration_ns


@pytest.mark.parametrize("text,ns", [
    ("500ms", 500_000_000), ("8s", 8_000_000_000), ("15m", 900_000_000_000), ("1h", 3_600_000_000_000),
    ("1h30m", 5_400_000_000_000), ("2.5s", 2_500_000_000), ("100us", 100_000), ("7ns", 7), (" 1S ", 1_000_000_000),
])
def test_parse(text, ns):
    assert parse_duration_ns(text) == ns


@pytest.mark.parametrize("bad", ["", "s", "10", "1x", "5 s", "-1s", "1s2", "ms500"])
def test_parse_rejects(bad):
    with pytest.raises(ValueError):
        parse_duration_ns(bad)


@pytest.mark.parametrize("ns,text", [(500_000_000, "500ms"), (8_000_000_000, "8s"), (900_000_000_000, "15m"),
                                     (3_600_000_000_000, "1h"), (2_500_000_000, "2.5s")])
def test_format(ns, text):
    assert format_duration_ns(ns) == text
