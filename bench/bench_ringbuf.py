"""Ring buffer consumption: nodetape's batch consumer against a bare bcc callback.

One BPF program emits a 24-byte record per syscall of a flood process (a
compiled tight getppid loop); the same program and ring size serve both
consumers in the same run:

- batch: RingBufferConsumer.read() (mmap'ed ring, one numpy view per poll),
  each batch turned into an Arrow RecordBatch and written to Parquet;
- callback: bcc's open_ring_buffer(cb) + ring_buffer_poll(), the callback only
  counting (the cheapest a Python callback can be). libbpf's poll drains
  until empty, so under a flood it may not return: it runs in a thread and
  the measurement ends when the flood stops.

A second pair of measurements gives each consumer's own ceiling, free of the
producer (two cores here: a flood and a consumer compete for them): the ring
is flooded until full, the producer stops, and the consumer drains it.

Reported: events/s each consumer took (wall clock), the producer's rate
(taken + dropped, counted in the kernel), the drops, and the ratio.
When drops > 0 the consumer's rate is where drops begin for it.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

PROGRAM = r"""
struct ev { u64 ts; u32 pid; u32 nr; u64 arg0; };
BPF_RINGBUF_OUTPUT(events, PAGES);
BPF_PERCPU_ARRAY(drops, u64, 1);
TRACEPOINT_PROBE(raw_syscalls, sys_enter) {
    if ((bpf_get_current_pid_tgid() >> 32) != FLOOD_TGID)
        return 0;
    struct ev *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        int z = 0;
        u64 *d = drops.lookup(&z);
        if (d) *d += 1;
        return 0;
    }
    e->ts = bpf_ktime_get_boot_ns();
    e->pid = bpf_get_current_pid_tgid();
    e->nr = args->id;
    e->arg0 = args->args[0];
    events.ringbuf_submit(e, WAKEUP_FLAG);
    return 0;
}
"""
RECORD = np.dtype([("ts", "<u8"), ("pid", "<u4"), ("nr", "<u4"), ("arg0", "<u8")])
FLOOD_C = r"""
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
/* wait for SIGUSR1, then getppid until killed: as fast as possible, or at argv[1] calls per second
   (checked every 256 calls: ahead of schedule, sleep until the next call is due) */
static volatile sig_atomic_t go;
static void on_go(int s) { (void)s; go = 1; }
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
    double rate = argc > 1 ? atof(argv[1]) : 0;
    signal(SIGUSR1, on_go);
    while (!go) pause();
    double t0 = now();
    for (long i = 0;; i++) {
        syscall(SYS_getppid);
        if (rate > 0 && (i & 255) == 255) {
            double ahead = (i + 1) / rate - (now() - t0);
            if (ahead > 0) { struct timespec d = {(time_t)ahead, (long)((ahead - (time_t)ahead) * 1e9)}; nanosleep(&d, 0); }
        }
    }
}
"""


def _flood_exe(work: Path) -> Path:
    src, exe = work / "flood.c", work / "flood"
    src.write_text(FLOOD_C)
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(src)], check=True)
    return exe


def _drops(b) -> int:
    import ctypes

    return int(sum(b[b"drops"][ctypes.c_int(0)]))


def _load(bcc, tgid: int, pages: int, wakeup: bool):
    flag = 0 if wakeup else 1  # BPF_RB_NO_WAKEUP for the polled batch consumer
    return bcc.BPF(text=PROGRAM.encode(), cflags=[f"-DFLOOD_TGID={tgid}", f"-DPAGES={pages}",
                                                  f"-DWAKEUP_FLAG={flag}"])


def _batch(bcc, exe: Path, seconds: float, pages: int, work: Path, rate: float = 0) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from nodetape.recorder.sources.bpf.ringbuf import ringbuf_consumer

    flood = subprocess.Popen([str(exe), str(rate)])
    try:
        b = _load(bcc, flood.pid, pages, wakeup=False)
        c = ringbuf_consumer(b[b"events"], RECORD)
        schema = pa.schema([("ts", pa.uint64()), ("pid", pa.uint32()), ("nr", pa.uint32()), ("arg0", pa.uint64())])
        out = work / "batch.parquet"
        writer = pq.ParquetWriter(out, schema, compression="zstd")
        taken = 0
        os.kill(flood.pid, 10)
        t0 = time.monotonic()
        cpu0 = time.process_time()
        while time.monotonic() - t0 < seconds:
            recs = c.read()
            if len(recs):
                writer.write_batch(pa.RecordBatch.from_arrays([pa.array(recs[n]) for n in RECORD.names],
                                                              schema=schema))
                taken += len(recs)
            else:
                time.sleep(0.001)
        elapsed = time.monotonic() - t0
        cpu = time.process_time() - cpu0
        flood.kill()
        flood.wait()
        dropped = _drops(b)
        leftover = c.pending_bytes() // c.rec
        writer.close()
        c.close()
        b.cleanup()
    finally:
        if flood.poll() is None:
            flood.kill()
            flood.wait()
    return {"events_per_s": taken / elapsed, "taken": taken, "dropped": dropped, "left_in_ring": leftover,
            "produced_per_s": (taken + dropped + leftover) / elapsed, "consumer_cpu_s": cpu, "seconds": elapsed,
            "parquet_bytes": out.stat().st_size, "malformed": c.malformed}


def _callback(bcc, exe: Path, seconds: float, pages: int, rate: float = 0) -> dict:
    flood = subprocess.Popen([str(exe), str(rate)])
    try:
        b = _load(bcc, flood.pid, pages, wakeup=True)
        n = [0]

        def cb(ctx, data, size):
            n[0] += 1

        b[b"events"].open_ring_buffer(cb)
        stop = threading.Event()
        polls = [0]

        def consume():
            while not stop.is_set():
                b.ring_buffer_poll(10)
                polls[0] += 1

        t = threading.Thread(target=consume, daemon=True)
        t.start()
        os.kill(flood.pid, 10)
        t0 = time.monotonic()
        time.sleep(seconds)
        taken = n[0]
        elapsed = time.monotonic() - t0
        flood.kill()
        flood.wait()
        stop.set()
        t.join(timeout=30)
        returned = not t.is_alive()
        dropped = _drops(b)
        if returned:
            b.cleanup()
    finally:
        if flood.poll() is None:
            flood.kill()
            flood.wait()
    # polls completed while flooding: 0 means the drain loop never came back
    return {"events_per_s": taken / elapsed, "taken": taken, "dropped_total": dropped,
            "produced_per_s": (taken + dropped) / elapsed, "seconds": elapsed,
            "poll_returned_after_flood": returned}


def _sweep(bcc, exe: Path, rates, seconds: float, pages: int, work: Path) -> list[dict]:
    """Each consumer under a producer paced at each rate: where do drops begin?"""
    out = []
    for rate in rates:
        b = _batch(bcc, exe, seconds, pages, work, rate)
        c = _callback(bcc, exe, seconds, pages, rate)
        out.append({"target_per_s": rate,
                    "batch": {"produced_per_s": b["produced_per_s"], "taken_per_s": b["events_per_s"],
                              "dropped": b["dropped"]},
                    "callback": {"produced_per_s": c["produced_per_s"], "taken_per_s": c["events_per_s"],
                                 "dropped": c["dropped_total"]}})
    return out


def _fill(bcc, exe: Path, pages: int, wakeup: bool):
    """Flood until the ring is full (drops start), then stop the producer."""
    flood = subprocess.Popen([str(exe)])
    try:
        b = _load(bcc, flood.pid, pages, wakeup)
        os.kill(flood.pid, 10)
        deadline = time.monotonic() + 30
        while _drops(b) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        flood.kill()
        flood.wait()
    return b


def _drain_batch(bcc, exe: Path, pages: int, work: Path) -> dict:
    """Consumer-only throughput: a full ring drained into Arrow and Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from nodetape.recorder.sources.bpf.ringbuf import ringbuf_consumer

    b = _fill(bcc, exe, pages, wakeup=False)
    c = ringbuf_consumer(b[b"events"], RECORD, max_bytes=1 << 20)
    schema = pa.schema([("ts", pa.uint64()), ("pid", pa.uint32()), ("nr", pa.uint32()), ("arg0", pa.uint64())])
    writer = pq.ParquetWriter(work / "drain.parquet", schema, compression="zstd")
    n = 0
    t0, cpu0 = time.monotonic(), time.process_time()
    while len(recs := c.read()):
        writer.write_batch(pa.RecordBatch.from_arrays([pa.array(recs[k]) for k in RECORD.names], schema=schema))
        n += len(recs)
    writer.close()
    elapsed, cpu = time.monotonic() - t0, time.process_time() - cpu0
    c.close()
    b.cleanup()
    return {"events": n, "seconds": elapsed, "events_per_s": n / elapsed, "events_per_cpu_s": n / cpu}


def _drain_callback(bcc, exe: Path, pages: int) -> dict:
    b = _fill(bcc, exe, pages, wakeup=True)
    n = [0]

    def cb(ctx, data, size):
        n[0] += 1

    b[b"events"].open_ring_buffer(cb)
    t0, cpu0 = time.monotonic(), time.process_time()
    b.ring_buffer_poll(0)  # no producer any more: drains until empty and returns
    elapsed, cpu = time.monotonic() - t0, time.process_time() - cpu0
    b.cleanup()
    return {"events": n[0], "seconds": elapsed, "events_per_s": n[0] / elapsed, "events_per_cpu_s": n[0] / cpu}


def run(seconds: float = 3.0, pages: int = 4096, drain_pages: int = 16384,
        sweep_rates=(250_000, 500_000, 1_000_000, 1_500_000, 0), sweep_seconds: float = 1.5,
        sweep_pages: int = 256) -> dict:
    """Both consumers, same program and ring (pages * 4 KiB), `seconds` each."""
    from nodetape.recorder.sources.bpf import env as bpf_env

    bpf_env.probe_bpf()
    bcc = bpf_env.import_bcc()
    with tempfile.TemporaryDirectory(prefix="nt-bench-rb-") as d:
        work = Path(d)
        exe = _flood_exe(work)
        batch = _batch(bcc, exe, seconds, pages, work)
        callback = _callback(bcc, exe, seconds, pages)
        drain_batch = _drain_batch(bcc, exe, drain_pages, work)
        drain_callback = _drain_callback(bcc, exe, drain_pages)
        # a 1 MiB ring: a consumer that falls behind for a third of a second drops
        sweep = _sweep(bcc, exe, sweep_rates, sweep_seconds, sweep_pages, work)
    return {
        "sweep": sweep, "sweep_ring_bytes": sweep_pages * 4096,
        # consumer-only ceiling: a full ring (drain_pages * 4 KiB) drained with no producer
        "drain": {"batch_arrow_parquet": drain_batch, "callback_count_only": drain_callback,
                  "ratio": drain_batch["events_per_s"] / drain_callback["events_per_s"]},
        "ring_bytes": pages * 4096,
        "record_bytes": 32,
        "batch": batch,
        "callback": callback,
        "ratio_batch_over_callback": batch["events_per_s"] / callback["events_per_s"] if callback["events_per_s"] else None,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
