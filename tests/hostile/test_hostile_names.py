"""Property tests of the manifest's name and path checks: whatever string a tape holds, a name that
passes stays one component, and a path that passes stays beneath the root it is joined to."""

from __future__ import annotations

import os
import posixpath

from hypothesis import given, settings
from hypothesis import strategies as st

from nodetape.tape.fields import PART_RE, plain_abs_path, plain_name

TEXT = st.lists(st.sampled_from(["/", ".", "..", "a", "\x00", "\x1b", "\n", "é", " ", "-", "//"]), max_size=20).map("".join)
ANY = st.one_of(TEXT, st.text(max_size=300))


@settings(max_examples=400, deadline=None)
@given(ANY)
def test_a_plain_name_is_one_component(s):
    if plain_name(s):
        joined = posixpath.normpath(posixpath.join("/root", s))
        assert posixpath.dirname(joined) == "/root" and "\x00" not in s
        assert not any(ord(c) < 32 or ord(c) == 127 for c in s)


@settings(max_examples=400, deadline=None)
@given(ANY)
def test_a_plain_absolute_path_never_climbs(s):
    if plain_abs_path(s):
        assert ".." not in s.split("/") and "\x00" not in s
        rel = posixpath.normpath(os.path.join("/target", s.lstrip("/")))
        assert rel == "/target" or rel.startswith("/target/")


@given(st.binary(max_size=30))
def test_part_names_are_exactly_the_writers(raw):
    s = raw.decode("latin-1")
    if PART_RE.fullmatch(s):
        assert plain_name(s) and s.startswith("part-") and s.endswith(".parquet")
