"""cgroupfs layout: which hierarchies a cgroup root holds (v1, v2 or hybrid).

Detected from the directory tree itself, not from /proc/mounts, so the same code
reads the real /sys/fs/cgroup, a synthetic tree in fixtures/, and a tree that
`nodetape replay --into` re-enacts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

UNIFIED = "unified"


@dataclass(frozen=True)
class CgroupLayout:
    root: Path
    mode: str  # 'v2', 'v1', 'hybrid' or 'none'
    # hierarchy name -> directory; 'unified' is cgroup2, others are v1 mount names
    hierarchies: dict[str, Path] = field(default_factory=dict)
    # v1 controller -> hierarchy name holding it (cpu -> 'cpu,cpuacct' on some distros)
    controllers: dict[str, str] = field(default_factory=dict)

    @property
    def v2_root(self) -> Path | None:
        return self.hierarchies.get(UNIFIED)

    def hierarchy_for(self, controller: str) -> str | None:
        """Hierarchy to read `controller` files from: the v1 one, else cgroup2 when it
        has that controller enabled at its root."""
        if controller in self.controllers:
            return self.controllers[controller]
        v2 = self.v2_root
        if v2 is not None and controller in v2_controllers(v2):
            return UNIFIED
        return None

    def to_json(self) -> dict:
        return {
            "root": str(self.root),
            "mode": self.mode,
            "hierarchies": {k: str(v) for k, v in self.hierarchies.items()},
            "controllers": dict(self.controllers),
        }


def v2_controllers(v2_root: Path) -> set[str]:
    try:
        return set((v2_root / "cgroup.controllers").read_text().split())
    except OSError:
        return set()


def _is_v2(d: Path) -> bool:
    return (d / "cgroup.controllers").exists()


def _is_v1(d: Path) -> bool:
    return (d / "cgroup.procs").exists() and not _is_v2(d)


def detect_layout(root: str | os.PathLike) -> CgroupLayout:
    root = Path(root)
    if _is_v2(root):
        return CgroupLayout(root, "v2", {UNIFIED: root}, {})
    hierarchies: dict[str, Path] = {}
    controllers: dict[str, str] = {}
    seen_real: set[str] = set()
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        entries = []
    for e in entries:
        p = Path(e.path)
        if not e.is_dir():
            continue
        real = os.path.realpath(p)
        if e.is_symlink():
            # cpu -> cpu,cpuacct: the controller names map to the real mount
            for ctl in e.name.split(","):
                controllers.setdefault(ctl, Path(real).name)
            continue
        if real in seen_real:
            continue
        seen_real.add(real)
        if _is_v2(p):
            hierarchies[UNIFIED] = p
        elif _is_v1(p):
            hierarchies[e.name] = p
            for ctl in e.name.split(","):
                if not ctl.startswith("name="):
                    controllers.setdefault(ctl, e.name)
    v1 = any(k != UNIFIED for k in hierarchies)
    mode = "hybrid" if v1 and UNIFIED in hierarchies else "v1" if v1 else "v2" if hierarchies else "none"
    return CgroupLayout(root, mode, hierarchies, controllers)
