"""A small writer of Perfetto TrackEvent traces over the `perfetto` package's protos.

The `perfetto` PyPI package ships the compiled trace protos
(`perfetto.protos.perfetto.trace.perfetto_trace_pb2`) and a trace builder; its
trace processor is a binary it downloads at run time, which we never use. This
module only builds `TracePacket`s: track descriptors first (so every event's
track is known before it is used), then the events sorted by time.

Clock: every timestamp is CLOCK_BOOTTIME nanoseconds as the tape recorded it.
Each packet says so (`timestamp_clock_id` = BUILTIN_CLOCK_BOOTTIME), and one
ClockSnapshot per clock pair of the manifest (BOOTTIME, REALTIME) lets the UI
show wall time, across an NTP step too.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from nodetape.core.errors import UserError

BOOTTIME = 6  # BuiltinClock.BUILTIN_CLOCK_BOOTTIME
REALTIME = 1  # BuiltinClock.BUILTIN_CLOCK_REALTIME
SEQUENCE_ID = 1  # every packet comes from one writer: one trusted sequence


def load_protos():
    """The trace protos of the `perfetto` package; a one-line UserError when it is missing."""
    try:
        from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb
    except ImportError:
        raise UserError("--perfetto: needs the 'perfetto' Python package (pip install 'nodetape[export]')") from None
    return pb


def track_uuid(*key) -> int:
    """A stable, non-zero 63-bit id per track key: the same tape gives the same trace bytes."""
    digest = hashlib.blake2b("\x1f".join(str(k) for k in key).encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 1) or 1


class TraceWriter:
    """Collects descriptors and events; `write` puts them in a file, descriptors first, events by time."""

    def __init__(self, pb):
        self.pb = pb
        self.descriptors: list = []
        # (ts, packet) in the order each track's events were made: `write` sorts by time
        # only (stable), so a track's own order (an end before the next begin at the same
        # time) stays as made
        self.events: list[tuple[int, object]] = []
        self.known: set[int] = set()
        self._names: dict[int, str] = {}  # track uuid -> name, for error messages
        self.counts = {"tracks": 0, "slices": 0, "instants": 0, "counter_values": 0}

    # -- tracks ----------------------------------------------------------------
    def _descriptor(self, uuid: int, parent: int | None, label: str):
        p = self.pb.TracePacket()
        p.trusted_packet_sequence_id = SEQUENCE_ID
        d = p.track_descriptor
        d.uuid = uuid
        if parent:
            d.parent_uuid = parent
        self.descriptors.append(p)
        self.known.add(uuid)
        self._names[uuid] = label
        self.counts["tracks"] += 1
        return d

    def group(self, key: tuple, name: str, parent: int | None = None, rank: int | None = None) -> int:
        """A named track (a group when others name it as parent); made once per key."""
        uuid = track_uuid("group", *key)
        if uuid not in self.known:
            d = self._descriptor(uuid, parent, name)
            d.name = name
            d.sibling_merge_behavior = self.pb.TrackDescriptor.SiblingMergeBehavior.SIBLING_MERGE_BEHAVIOR_NONE
            if rank is not None:
                d.sibling_order_rank = rank
        return uuid

    def counter(self, key: tuple, name: str, parent: int | None, unit: str | None = None,
                bytes_: bool = False) -> int:
        uuid = track_uuid("counter", *key)
        if uuid not in self.known:
            d = self._descriptor(uuid, parent, name)
            d.name = name
            d.sibling_merge_behavior = self.pb.TrackDescriptor.SiblingMergeBehavior.SIBLING_MERGE_BEHAVIOR_NONE
            c = d.counter
            if bytes_:
                c.unit = self.pb.CounterDescriptor.Unit.UNIT_SIZE_BYTES
            elif unit:
                c.unit_name = unit
        return uuid

    def process(self, key: tuple, pid: int, name: str | None) -> int:
        uuid = track_uuid("process", *key)
        if uuid not in self.known:
            d = self._descriptor(uuid, None, f"process {pid}")
            d.process.pid = pid
            if name:
                d.process.process_name = name
        return uuid

    def thread(self, key: tuple, pid: int, tid: int, name: str | None) -> int:
        """A thread's track; Perfetto nests it under the process of the same pid."""
        uuid = track_uuid("thread", *key)
        if uuid not in self.known:
            d = self._descriptor(uuid, None, f"thread {tid}")
            d.thread.pid = pid
            d.thread.tid = tid
            if name:
                d.thread.thread_name = name
        return uuid

    # -- events ----------------------------------------------------------------
    def _event(self, ts: int, track: int, kind, name: str | None = None, args: dict | None = None):
        if ts is None or not 0 <= ts < 1 << 63:
            raise ValueError(f"a timestamp out of range ({ts!r}) for track {self._names.get(track, track)}")
        p = self.pb.TracePacket()
        p.timestamp = int(ts)
        p.timestamp_clock_id = BOOTTIME
        p.trusted_packet_sequence_id = SEQUENCE_ID
        e = p.track_event
        e.type = kind
        e.track_uuid = track
        if name is not None:
            e.name = name
        for k, v in (args or {}).items():
            if v is None:
                continue
            a = e.debug_annotations.add()
            a.name = k
            if isinstance(v, bool):
                a.bool_value = v
            elif isinstance(v, int):
                a.int_value = v
            elif isinstance(v, float):
                a.double_value = v
            else:
                a.string_value = str(v)
        self.events.append((int(ts), p))
        return e

    def begin(self, track: int, ts: int, name: str, args: dict | None = None) -> None:
        """Open a slice; a track's begins and ends must be made in time order, properly nested."""
        self._event(ts, track, self.pb.TrackEvent.Type.TYPE_SLICE_BEGIN, name, args)
        self.counts["slices"] += 1

    def end(self, track: int, ts: int) -> None:
        self._event(ts, track, self.pb.TrackEvent.Type.TYPE_SLICE_END)

    def slice(self, track: int, start: int, end: int, name: str, args: dict | None = None) -> None:
        self.begin(track, start, name, args)
        self.end(track, end)

    def instant(self, track: int, ts: int, name: str, args: dict | None = None) -> None:
        self._event(ts, track, self.pb.TrackEvent.Type.TYPE_INSTANT, name, args)
        self.counts["instants"] += 1

    def value(self, track: int, ts: int, v: float) -> None:
        self._event(ts, track, self.pb.TrackEvent.Type.TYPE_COUNTER).double_counter_value = float(v)
        self.counts["counter_values"] += 1

    # -- output ----------------------------------------------------------------
    def _clock_packets(self, pairs: list[tuple[int, int]]) -> list:
        out = []
        for boot, offset in pairs:
            p = self.pb.TracePacket()
            p.trusted_packet_sequence_id = SEQUENCE_ID
            snap = p.clock_snapshot
            snap.primary_trace_clock = BOOTTIME
            for cid, ts in ((BOOTTIME, boot), (REALTIME, boot + offset)):
                c = snap.clocks.add()
                c.clock_id, c.timestamp = cid, ts
            out.append(p)
        return out

    def write(self, out: Path, clock_pairs: list[tuple[int, int]]) -> int:
        """Write the trace to `out` (a temp name, then renamed); returns its size in bytes."""
        from perfetto.trace_builder.proto_builder import StreamingTraceProtoBuilder

        packets = self._clock_packets(clock_pairs) + self.descriptors
        packets += [p for _, p in sorted(self.events, key=lambda e: e[0])]
        if packets:
            packets[0].sequence_flags = self.pb.TracePacket.SequenceFlags.SEQ_INCREMENTAL_STATE_CLEARED
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                builder = StreamingTraceProtoBuilder(f)
                for p in packets:
                    builder.write_packet(p)
            os.replace(tmp, out)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise UserError(f"{out}: cannot write: {e.strerror or e}", str(out)) from None
        return out.stat().st_size
