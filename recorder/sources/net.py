"""net: network interfaces from SYS/class/net, a snapshot at start and a row per change.

A change is an interface that appeared (`added`), vanished (`removed`) or whose
operstate, MTU or address changed (`changed`). Every row carries the
interface's cumulative counters as read at that moment (raw, as the kernel
reports them; rates are derived in SQL). Interfaces are those of the
recorder's network namespace.
"""

from __future__ import annotations

import os

from ...schemas import batch
from ..source import BaseSource, Batches, RecordContext, SourceUnavailable

_COUNTERS = ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets", "rx_dropped", "tx_dropped")
_COLS = ("ts_ns", "event", "ifname", "ifindex", "operstate", "mtu", "address", *_COUNTERS)


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
        self._state = self._scan()
        ts = ctx.clock()
        return self._emit([(ts, "snapshot", n, v) for n, v in sorted(self._state.items())])

    def _scan(self) -> dict[str, tuple]:
        out = {}
        try:
            names = os.listdir(self._dir)
        except OSError:
            return out
        for n in names:
            d = f"{self._dir}/{n}"
            if not os.path.exists(f"{d}/ifindex"):
                continue  # bonding_masters and other non-interface files
            out[n] = (_int(_read(f"{d}/ifindex")), _read(f"{d}/operstate"), _int(_read(f"{d}/mtu")), _read(f"{d}/address"))
        return out

    def _counters(self, name: str) -> list[int | None]:
        return [_int(_read(f"{self._dir}/{name}/statistics/{c}")) for c in _COUNTERS]

    def _emit(self, rows) -> Batches:
        if not rows:
            return []
        recs = [(ts, ev, n, *v, *(self._counters(n) if ev != "removed" else [None] * len(_COUNTERS)))
                for ts, ev, n, v in rows]
        return self.counted([("net_interfaces", batch("net_interfaces", dict(zip(_COLS, map(list, zip(*recs))))))])

    def poll(self, now_ns: int) -> Batches:
        if not self.due(now_ns):
            return []
        new = self._scan()
        ts = self.ctx.clock()
        rows = []
        for n, v in sorted(self._state.items()):
            if n not in new:
                rows.append((ts, "removed", n, v))
        for n, v in sorted(new.items()):
            old = self._state.get(n)
            if old is None:
                rows.append((ts, "added", n, v))
            elif old != v:
                rows.append((ts, "changed", n, v))
        self._state = new
        return self._emit(rows)
