"""One cgroup of the samples source (cgroup_samples.py): its kept files and what skips its reads.

The files read every interval are kept open (fdcache.KeptFile); the limits are read once
(read_config) and again only after a write to them (skip rule 1 of cgroup_samples.py); a
file the cgroup does not have is put aside (`absent`, skip rule 5) until such a write.
"""

from __future__ import annotations

import errno

from ..fdcache import KeptFile
from ..kernelfs import cgroup_files as cf

GONE = (errno.ENOENT, errno.ENODEV)  # a file not in the cgroup (ENOENT), or removed while kept open (ENODEV)


def kept(path: str | None) -> KeptFile | None:
    return KeptFile(path) if path is not None else None


def read_once(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        with open(path, "rb", buffering=0) as f:
            return f.read().decode()
    except OSError:
        return None


class SampledCgroup:
    __slots__ = ("rel", "ident", "ino", "usage", "stat", "mem", "pids", "procs",
                 "quota_path", "period_path", "memmax_path", "cpu_max_path",
                 "quota", "period", "memmax", "dirty", "last_stat", "gone", "pids_zero", "procs_zero", "absent")

    def close(self) -> None:
        for kf in (self.usage, self.stat, self.mem, self.pids, self.procs, *self.absent.values()):
            if kf is not None:
                kf.close()

    def restore_absent(self) -> None:
        """Look again for the files found absent: a write that can make them appear came (dirty)."""
        for name, kf in self.absent.items():
            kf.close()  # reopened by path at the next read
            setattr(self, name, kf)
        self.absent.clear()

    def read_config(self, v2: bool) -> None:
        """Read the limits (at the cgroup's first sample and after a write to them), and look again
        for the files found absent."""
        if self.absent:
            self.restore_absent()
        if v2:
            text = read_once(self.cpu_max_path)
            self.quota, self.period = cf.parse_cpu_max(text) if text is not None else (None, None)
        else:
            t = read_once(self.quota_path)
            self.quota = cf.parse_cfs_quota(t) if t is not None else None
            t = read_once(self.period_path)
            self.period = cf.parse_int(t) if t is not None else None
        t = read_once(self.memmax_path)
        self.memmax = cf.parse_memory_limit(t) if t is not None else None
        self.dirty = False
