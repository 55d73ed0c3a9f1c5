"""`nodetape doctor` as text: the node, then what it can and cannot record, and why."""

from __future__ import annotations

import os
from pathlib import Path


def render(rows: list[dict], cgroup_root: Path) -> str:
    """rows: nodetape.api.doctor()'s, one per source."""
    from nodetape.recorder.kernelfs.cgroupfs import detect_layout

    layout = detect_layout(cgroup_root)
    uname = os.uname()
    out = [
        f"node      {uname.nodename}  kernel {uname.release}  {uname.machine}",
        f"cgroups   {layout.mode}  ({', '.join(sorted(layout.hierarchies)) or 'none found'} under {cgroup_root})",
        f"user      uid {os.geteuid()}{' (root)' if os.geteuid() == 0 else ''}",
        "",
    ]
    ok = [r for r in rows if r["status"] == "available"]
    bad = [r for r in rows if r["status"] != "available"]
    width = max(len(r["source"]) for r in rows)
    out.append(f"can record ({len(ok)}):")
    out += [f"  ✓ {r['source']:<{width}}  {r['summary'] or ''}" for r in ok]
    if bad:
        out.append(f"\ncannot record ({len(bad)}):")
        for r in bad:
            out.append(f"  ✗ {r['source']:<{width}}  {r['reason']}")
            if r["needs"]:
                out.append(f"    {'':<{width}}  needs: {r['needs']}")
    return "\n".join(out) + "\n"
