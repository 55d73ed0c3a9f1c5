"""throttle-probe: the moment a CFS run queue is throttled (throttle_cfs_rq).

There is no tracepoint for CFS throttling; the kernel must allow a kprobe or
an fentry program on throttle_cfs_rq. Where it refuses (no CONFIG_KPROBE_EVENTS,
fentry not permitted), the source is unavailable with the kernel's own error
for each attempt; throttling is still visible in cgroup_samples (nr_throttled).
When an attach succeeds the source reports unavailable too, for now: this
version records no rows from it (it says so instead of pretending).
"""

from __future__ import annotations

import os

from nodetape.recorder.sources.bpf import env as bpf_env
from ...source import Batches, RecordContext, SourceUnavailable
from . import BpfSource, captured_stderr, err_tail, release_freed_heap

FUNC = "throttle_cfs_rq"
KPROBE_PMU = "/sys/bus/event_source/devices/kprobe/type"


class ThrottleProbeSource(BpfSource):
    name = "throttle-probe"
    tables = ()
    summary = "CFS throttle moments from a kprobe/fentry on throttle_cfs_rq, where the kernel permits it"
    # only an attach attempt tells whether the kernel permits it: doctor starts it to find out
    probe_by_starting = True

    def start(self, ctx: RecordContext) -> Batches:
        self.ctx = ctx
        bpf_env.probe_bpf()
        bcc = bpf_env.import_bcc()
        errors = []
        # kprobe: needs the kprobe PMU or tracefs kprobe_events (CONFIG_KPROBE_EVENTS)
        kprobe_events = bpf_env.tracefs_path() / "kprobe_events"
        if not os.path.exists(KPROBE_PMU) and not kprobe_events.exists():
            errors.append(f"kprobe: the kernel has no kprobe PMU ({KPROBE_PMU}) and no {kprobe_events} "
                          "(built without CONFIG_KPROBE_EVENTS)")
        else:
            with captured_stderr() as err:
                try:
                    b = bcc.BPF(text=b"int on_throttle(void *ctx) { return 0; }")
                    b.attach_kprobe(event=FUNC.encode(), fn_name=b"on_throttle")
                    b.cleanup()
                    ok = True
                except Exception as e:
                    ok, failure = False, e
            if ok:
                errors.append("kprobe: attached, but this nodetape version records no rows from it")
            else:
                errors.append(f"kprobe: {failure}: {err_tail(err, 200)}")
        # fentry (BPF trampoline): BTF-typed, loaded as BPF_PROG_TYPE_TRACING
        with captured_stderr() as err:
            try:
                b = bcc.BPF(text=f"KFUNC_PROBE({FUNC}) {{ return 0; }}".encode())
                b.cleanup()
                ok = True
            except Exception as e:
                ok, failure = False, e
        if ok:
            errors.append("fentry: loaded, but this nodetape version records no rows from it")
        else:
            # bcc words any EPERM as "Need super-user privileges"; the kernel's text is on fd 2
            errors.append(f"fentry: the kernel refused the program ({err_tail(err, 200)}; euid {os.geteuid()})")
        release_freed_heap()  # the fentry attempt loads vmlinux BTF: ~36 MiB freed but kept by malloc
        raise SourceUnavailable(f"cannot trace {FUNC}: " + "; ".join(errors))
