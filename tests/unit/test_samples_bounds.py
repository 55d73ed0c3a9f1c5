"""A storm of new cgroups is admitted by samples and psi a bounded number per sample (after the
first), so one poll never sets up thousands of cgroups; the first sample takes the whole tree.
On a copy of a synthetic pure-v2 tree (plain folders watched with inotify; no root needed)."""

from __future__ import annotations

import shutil
from pathlib import Path

from nodetape.recorder.sources.admission import MAX_NEW_PER_SAMPLE
from nodetape.recorder.source import RecordContext
from nodetape.recorder.sources.cgroup_samples import CgroupSamplesSource
from nodetape.recorder.sources.psi import PsiSource

SYNTH = Path(__file__).resolve().parents[2] / "fixtures" / "synthetic" / "v2-cgroupfs"


def _rows(batches, table):
    return sum(b.num_rows for t, b in batches if t == table)


def _storm(root: Path, n: int) -> None:
    base = root / "storm"
    base.mkdir()
    for i in range(n):
        d = base / f"c{i}"
        d.mkdir()
        (d / "cpu.pressure").write_text("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
                                        "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")


def test_samples_and_psi_admit_a_storm_over_several_samples(tmp_path):
    root = tmp_path / "cg"
    shutil.copytree(SYNTH, root, symlinks=True)
    n = 2 * MAX_NEW_PER_SAMPLE + 88
    ctx = RecordContext(cgroup_root=root, interval_ns=1)
    samples, psi = CgroupSamplesSource(), PsiSource()
    for s in (samples, psi):
        s.probe(ctx)
        s.start(ctx)
    try:
        base_rows = _rows(samples.sample(), "cgroup_samples")
        base_psi = _rows(psi.poll(0), "psi_samples")
        _storm(root, n)
        seen = []
        for k in range(4):
            seen.append((_rows(samples.sample(), "cgroup_samples") - base_rows,
                         _rows(psi.poll(k + 1), "psi_samples") - base_psi))  # due at every call (interval 1 ns)
    finally:
        for s in (samples, psi):
            s.stop()
    # samples: +1, the storm's parent folder comes with the first batch (a row, its files missing);
    # psi: that folder has no pressure file, so no row: one cgroup fewer
    step = MAX_NEW_PER_SAMPLE
    assert [a for a, _ in seen] == [step, 2 * step, n + 1, n + 1]
    assert [b for _, b in seen] == [step - 1, 2 * step - 1, n, n]
