"""Property: whatever bytes a tape holds as a path, what confine accepts resolves beneath the target."""

from __future__ import annotations

import os
import posixpath

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodetape.replay.confine import NAME_MAX, Beneath, Escape, components, plain_name

# path-like bytes: heavy on '/', '.', NUL and a few letters, plus any byte at all
PIECES = st.sampled_from([b"/", b".", b"..", b"\x00", b"a", b"b", b"//", b"../", b"/..", b"\xff", b"n" * 200])
PATHS = st.one_of(st.binary(max_size=80), st.lists(PIECES, max_size=12).map(b"".join))


def text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


@given(PATHS)
@settings(max_examples=600, deadline=None)
def test_accepted_paths_stay_beneath_lexically(raw):
    try:
        comps = components(text(raw))
    except Escape:
        return
    for c in comps:
        assert c and c not in (".", "..") and "/" not in c and "\x00" not in c
        assert len(c.encode("utf-8", "surrogatepass")) <= NAME_MAX
    joined = posixpath.normpath(posixpath.join("/target", *comps))
    assert joined == "/target" or joined.startswith("/target/")


@given(PATHS)
@settings(max_examples=600, deadline=None)
def test_refused_paths_are_exactly_the_unsafe_ones(raw):
    s = text(raw)
    names = [c for c in s.split("/") if c not in ("", ".")]
    unsafe = "\x00" in s or ".." in names or any(len(c.encode("utf-8", "surrogatepass")) > NAME_MAX for c in names)
    try:
        components(s)
    except Escape:
        assert unsafe
    else:
        assert not unsafe


@given(st.binary(max_size=40))
@settings(max_examples=400, deadline=None)
def test_plain_names_are_single_visible_components(raw):
    try:
        name = plain_name(text(raw))
    except Escape:
        return
    assert "/" not in name and "\x00" not in name and not name.startswith(".")


@pytest.fixture(scope="module")
def fs_root(tmp_path_factory):
    return tmp_path_factory.mktemp("beneath")


@given(PATHS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_made_folders_resolve_beneath_the_root(fs_root, raw):
    try:
        comps = components(text(raw))
    except Escape:
        return
    root = fs_root / "t"
    root.mkdir(exist_ok=True)
    fs = Beneath(root)
    try:
        fd = fs.dir(comps, create=True)
        real = os.path.realpath(f"/proc/self/fd/{fd}")
    finally:
        fs.close()
    assert real == str(root.resolve()) or real.startswith(str(root.resolve()) + "/")
    if comps:
        fs = Beneath(root)
        try:
            fs.remove_tree(comps[:1])
        finally:
            fs.close()
    assert sorted(os.listdir(fs_root)) == ["t"]
