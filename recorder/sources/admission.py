"""How many new cgroups a sampling source (samples, psi) sets up per sample.

Each new cgroup costs its files' opens and first reads; a storm of thousands
set up in one poll held the loop 0.8-0.9 s (BENCHMARKS.md, storm section), so
after the first sample, which takes the whole tree, new cgroups are admitted at
most MAX_NEW_PER_SAMPLE per sample and a storm is taken over a few intervals.
"""

from __future__ import annotations

MAX_NEW_PER_SAMPLE = 256


def admit(new: list[str], first: bool) -> tuple[list[str], bool]:
    """The new cgroups to set up now (all of them at the first sample), and whether more wait."""
    if first or len(new) <= MAX_NEW_PER_SAMPLE:
        return new, False
    return new[:MAX_NEW_PER_SAMPLE], True
