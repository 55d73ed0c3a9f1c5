"""BENCHMARKS.md sections rewritten by a benchmark keep their hand-written notes (bench/common.py)."""

from bench.common import NOTES, keep_notes, replace_section

OLD = f"""# Bench

## Headline

| k | v |

## 5. Queries

old table

{NOTES}

Tried X: 2.5 GB. Kept Y.

## 6. Replay

replay text
"""


def test_replace_section_keeps_its_notes_and_the_other_sections():
    new = replace_section(OLD, "## 5. Queries", "## 5. Queries\n\nnew table\n")
    assert "old table" not in new and "new table" in new
    assert new.index("new table") < new.index(NOTES) < new.index("Tried X") < new.index("## 6. Replay")
    assert new.count(NOTES) == 1 and "replay text" in new and new.startswith("# Bench\n\n## Headline")


def test_a_section_without_notes_is_replaced_whole_and_a_missing_one_appended():
    new = replace_section(OLD, "## 6. Replay", "## 6. Replay\n\nfaster\n")
    assert "replay text" not in new and new.rstrip().endswith("faster") and "Tried X" in new
    added = replace_section(OLD, "## 7. New", "## 7. New\n\nbody\n")
    assert added.rstrip().endswith("## 7. New\n\nbody") and added.startswith(OLD.rstrip("\n"))


def test_a_full_rewrite_keeps_notes_by_heading():
    fresh = "# Bench\n\n## Headline\n\n| k | w |\n\n## 5. Queries\n\nnewer table\n\n## 6. Replay\n\nx\n"
    out = keep_notes(OLD, fresh)
    assert "newer table" in out and "Tried X: 2.5 GB. Kept Y." in out and "old table" not in out
    assert out.index("Tried X") < out.index("## 6. Replay")
    assert keep_notes(OLD, out) == out  # idempotent: notes are not appended twice
