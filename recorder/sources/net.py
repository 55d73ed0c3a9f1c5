"""net: network interfaces from SYS/class/net, a snapshot at start and a row per change.

A change is an interface that appeared (`added`), vanished (`removed`) or whose
operstate, MTU or address changed (`changed`). Every row carries the
interface's cumulative counters as read at that moment (raw, as the kernel
reports them; rates are derived in SQL). Interfaces are those of the
recorder's network namespace.

The listing's attributes (ifindex, operstate, mtu, address) are read with
pread on descriptors kept per interface (sysfs makes a file's text afresh at
each read from offset 0; a descriptor of a removed interface fails, and is
opened again by name), counters only for a row.

Changes are noticed as they happen: a thread listens to the kernel's link
notifications (rtnetlink, group RTMGRP_LINK: every RTM_NEWLINK/RTM_DELLINK;
sysfs has the interface before the message is sent) and compares
SYS/class/net at once, so ts_ns is within milliseconds of the change (a
pod's veth appearing is the CNI-done signal pod_births uses), and wakes the
loop for the rows. With the thread listening, nothing is read per interval: every
change the listing holds comes with a link message (an overflowed socket reports
ENOBUFS, and the thread compares all the same), so an idle node's loop does not
poll the source at all. Where netlink cannot be opened (or SYS is another folder)
the listing is compared once per interval instead.
"""

from __future__ import annotations

import os
import select
import socket
import threading

from ...schemas import batch
from ..fdcache import KeptFile
from ..source import NEVER, BaseSource, Batches, RecordContext, SourceUnavailable

_COUNTERS = ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets", "rx_dropped", "tx_dropped")
_COLS = ("ts_ns", "event", "ifname", "ifindex", "operstate", "mtu", "address", *_COUNTERS)
_RTMGRP_LINK = 1
_ATTRS = ("ifindex", "operstate", "mtu", "address")


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _int(s: str | None) -> int | None:
    try:
        return int(s) if s is not None else None
    except ValueError:
        return None


def iface_values(raw: list[bytes | None]) -> tuple:
    """The listing's (ifindex, operstate, mtu, address) from the attribute files as read (None: unreadable)."""
    ifindex, oper, mtu, addr = (None if b is None else b.strip().decode(errors="surrogateescape") for b in raw)
    return _int(ifindex), oper, _int(mtu), addr


class _Iface:
    """One interface's attribute files, kept open (fdcache budget) and read with pread.

    The kept files are those of the device that had the name when they were opened: the inode
    of NAME/ifindex, looked up by name at each read, says whether the name now leads to another
    device (renamed, or removed and made again) or, in a folder that is not sysfs, to other files.
    """

    __slots__ = ("folder", "files", "ino")

    def __init__(self, folder: str):
        self.folder = folder
        self.files = [KeptFile(f"{folder}/{a}") for a in _ATTRS]
        self.ino = None

    def read(self) -> list[bytes | None] | None:
        """Each file's bytes (None for one that cannot be read); None when the interface is gone."""
        try:
            ino = os.stat(f"{self.folder}/ifindex").st_ino
        except OSError:
            return None
        if ino != self.ino:
            self.close()  # opened again by name
            self.ino = ino
        out = []
        for kf in self.files:
            try:
                out.append(kf.read(256))
            except OSError:
                out.append(None)
        return out if out[0] is not None else None

    def close(self) -> None:
        for kf in self.files:
            kf.close()


class NetSource(BaseSource):
    name = "net"
    tables = ("net_interfaces",)
    summary = "network interfaces (state, MTU, counters): snapshot at start and a row per change"
    needs = "sysfs mounted (/sys/class/net)"
    sampled = True

    def probe(self, ctx: RecordContext) -> None:
        if not (ctx.sys_root / "class" / "net").is_dir():
            raise SourceUnavailable(f"{ctx.sys_root / 'class' / 'net'} does not exist (is sysfs mounted?)")

    def start(self, ctx: RecordContext) -> Batches:
        super().start(ctx)
        self._dir = str(ctx.sys_root / "class" / "net")
        self._lock = threading.Lock()
        self._pending: list[tuple] = []  # rows found by the netlink thread, emitted at the next poll
        self._ifaces: dict[str, _Iface] = {}  # kept files by name (under self._lock once the thread runs)
        self._not_ifaces: set[str] = set()  # plain files of the folder (bonding_masters)
        self._state = self._scan()
        ts = ctx.clock()
        out = self._emit([self._with_counters(ts, "snapshot", n, v) for n, v in sorted(self._state.items())])
        self._start_listener()
        return out

    def _start_listener(self) -> None:
        self._nl = self._thread = None
        if str(self.ctx.sys_root) != "/sys":
            return  # another folder laid out like /sys: the kernel's notifications are not about it
        try:
            nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
            nl.bind((0, _RTMGRP_LINK))
        except OSError:
            return  # the interval's comparison still sees every change, later
        self._nl = nl
        self._stop_r, self._stop_w = os.pipe2(os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._listen, name="nodetape-net-netlink", daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        p = select.poll()
        p.register(self._nl.fileno(), select.POLLIN)
        p.register(self._stop_r, select.POLLIN)
        ts = self.ctx.clock()  # first a comparison: what changed between the snapshot and the bind
        while True:
            with self._lock:
                rows = self._changes(ts)
                first = rows and not self._pending
                self._pending += rows
            if first:
                self.ctx.wake()  # the first rows since the last poll: the loop takes them at its next tick
            fds = {fd for fd, _ in p.poll()}
            if self._stop_r in fds:
                return
            ts = self.ctx.clock()
            try:
                while self._nl.recv(65536, socket.MSG_DONTWAIT):  # the messages only say "look now"
                    pass
            except OSError:
                pass  # drained (EAGAIN), or ENOBUFS: the comparison below sees the current state anyway

    def _changes(self, ts: int) -> list[tuple]:
        """Rows for what differs from the last listing (holding self._lock)."""
        new = self._scan()
        rows = [self._with_counters(ts, "removed", n, v) for n, v in sorted(self._state.items()) if n not in new]
        for n, v in sorted(new.items()):
            old = self._state.get(n)
            if old is None:
                rows.append(self._with_counters(ts, "added", n, v))
            elif old != v:
                rows.append(self._with_counters(ts, "changed", n, v))
        self._state = new
        return rows

    def _scan(self) -> dict[str, tuple]:
        out = {}
        try:
            names = os.listdir(self._dir)
        except OSError:
            return out
        ifaces = self._ifaces
        for n in [n for n in ifaces if n not in names]:
            ifaces.pop(n).close()
        for n in names:
            kept = ifaces.get(n)
            if kept is None:
                d = f"{self._dir}/{n}"
                if n in self._not_ifaces or not os.path.exists(f"{d}/ifindex"):
                    if not os.path.isdir(d):
                        self._not_ifaces.add(n)  # bonding_masters and other non-interface files
                    continue
                kept = ifaces[n] = _Iface(d)
            raw = kept.read()
            if raw is not None:
                out[n] = iface_values(raw)
        return out

    def _counters(self, name: str) -> list[int | None]:
        return [_int(_read(f"{self._dir}/{name}/statistics/{c}")) for c in _COUNTERS]

    def _emit(self, rows) -> Batches:
        if not rows:
            return []
        recs = [(ts, ev, n, *v, *counters) for ts, ev, n, v, counters in rows]
        return self.counted([("net_interfaces", batch("net_interfaces", dict(zip(_COLS, map(list, zip(*recs))))))])

    def _with_counters(self, ts: int, ev: str, name: str, v: tuple) -> tuple:
        """A row with the interface's counters read now (none for a removed one)."""
        return ts, ev, name, v, (self._counters(name) if ev != "removed" else [None] * len(_COUNTERS))

    def next_poll_ns(self) -> int | None:
        """With the netlink thread: at the next tick while its rows wait (it wakes the loop), else
        never; without it, each interval."""
        if getattr(self, "_thread", None) is None:
            return super().next_poll_ns()
        return 0 if self._pending else NEVER

    def poll(self, now_ns: int) -> Batches:
        with self._lock:
            if self._thread is None and self.due(now_ns):
                self._pending += self._changes(self.ctx.clock())
            rows, self._pending = self._pending, []
        return self._emit(rows)

    def stop(self) -> Batches:
        if getattr(self, "_thread", None) is not None:
            os.write(self._stop_w, b"x")
            self._thread.join(5)
            self._thread = None
            os.close(self._stop_r)
            os.close(self._stop_w)
        if getattr(self, "_nl", None) is not None:
            self._nl.close()
            self._nl = None
        for kept in getattr(self, "_ifaces", {}).values():
            kept.close()
        with self._lock:
            rows, self._pending = self._pending, []
        return self._emit(rows)
