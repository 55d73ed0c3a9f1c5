"""Source names (DESIGN.md `--sources`) and where each source lives.

Modules are imported lazily so that a missing optional dependency (bcc) makes
its sources unavailable instead of breaking the recorder.
"""

from __future__ import annotations

import importlib

from nodetape.core.errors import SourceUnavailable

# name -> "module:Class", relative to nodetape.recorder.sources; the order is the
# order sources start and appear in manifests.
SOURCES: dict[str, str] = {
    "cgroup": "cgroup_inotify:CgroupInotifySource",
    "samples": "cgroup_samples:CgroupSamplesSource",
    "psi": "psi:PsiSource",
    "psi-triggers": "psi_triggers:PsiTriggerSource",
    "proc": "proc:ProcSource",
    "mounts": "mounts:MountsSource",
    "net": "net:NetSource",
    "runtime": "runtime:RuntimeSource",
    "syscalls": "bpf.syscalls:SyscallCountSource",
    "latency": "bpf.latency:SyscallLatencySource",
    "lineage": "bpf.lineage:LineageSource",
    "cgroup-tp": "bpf.cgroup_tp:CgroupTracepointSource",
    "opens": "bpf.opens:FileOpensSource",
    "drops": "bpf.drops:PacketDropsSource",
    "throttle-probe": "bpf.throttle_probe:ThrottleProbeSource",
}

SOURCE_NAMES: tuple[str, ...] = tuple(SOURCES)


def parse_source_list(text: str | None) -> list[str]:
    """'psi,cgroup' -> ['cgroup', 'psi'] in registry order; ValueError names unknown ones."""
    if text is None or text.strip() in ("", "all"):
        return list(SOURCE_NAMES)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SOURCES]
    if unknown:
        raise ValueError(f"unknown source(s): {', '.join(unknown)} (sources: {', '.join(SOURCE_NAMES)})")
    return [n for n in SOURCE_NAMES if n in names]


def load_source_class(name: str):
    """The class of source `name`; SourceUnavailable when its module is not there."""
    module, _, cls = SOURCES[name].partition(":")
    try:
        mod = importlib.import_module(f"{__package__}.sources.{module}")
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith(f"{__package__}.sources"):
            raise SourceUnavailable("not implemented in this nodetape version") from None
        raise SourceUnavailable(f"missing Python module {e.name}") from None
    return getattr(mod, cls)
