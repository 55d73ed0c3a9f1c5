"""PSI trigger text -> kernel trigger line, and the kernel's window rules as clear errors."""

import pytest

from nodetape.recorder.kernelfs.psi_trigger import Trigger, parse_trigger


def test_parse():
    t = parse_trigger("memory some 150ms/2s")
    assert t == Trigger("memory", "some", 150_000, 2_000_000)
    assert t.line() == b"some 150000 2000000\x00"
    assert parse_trigger("cpu full 50ms/1s", privileged=True).window_us == 1_000_000


@pytest.mark.parametrize(("text", "needle"), [
    ("memory some 150ms", "expected"),
    ("disk some 1s/2s", "resource"),
    ("cpu most 1s/2s", "some"),
    ("cpu some 10ms/100ms", "500ms to 10s"),
    ("cpu some 1s/20s", "500ms to 10s"),
    ("cpu some 3s/2s", "at most the window"),
    ("cpu some abc/2s", "cpu some abc/2s"),
])
def test_errors_name_the_trigger(text, needle):
    with pytest.raises(ValueError) as e:
        parse_trigger(text)
    assert needle in str(e.value)
    assert repr(text) in str(e.value)


def test_unprivileged_window_multiple_of_2s():
    with pytest.raises(ValueError, match="multiple of 2s"):
        parse_trigger("cpu some 50ms/1s", privileged=False)
    assert parse_trigger("cpu some 50ms/4s", privileged=False).window_us == 4_000_000


def test_cgroup_globs_match_paths_below_the_cgroup2_root():
    from nodetape.recorder.sources.psi_triggers import matching

    rels = ["/", "/kubepods", "/kubepods/burstable/pod1/c1", "/system.slice/ssh.service", "/nt-a b"]
    assert matching(rels, ["*kubepods*"]) == ["/kubepods", "/kubepods/burstable/pod1/c1"]
    assert matching(rels, ["/kubepods/*/pod*/*", "/nt-a *"]) == ["/kubepods/burstable/pod1/c1", "/nt-a b"]
    assert matching(rels, []) == []
