"""Pressure Stall Information files: /proc/pressure/* and cgroup2 *.pressure.

Format (Documentation/accounting/psi.rst):
    some avg10=0.00 avg60=0.00 avg300=0.00 total=0
    full avg10=0.00 avg60=0.00 avg300=0.00 total=0
"""

from __future__ import annotations

RESOURCES = ("cpu", "memory", "io", "irq")
PSI_KEYS = ("some_avg10", "some_avg60", "some_avg300", "some_total_usec",
            "full_avg10", "full_avg60", "full_avg300", "full_total_usec")


def parse_psi(text: str) -> dict[str, float | int | None]:
    """Parse a PSI file into the psi_samples columns; absent lines give None."""
    out: dict[str, float | int | None] = dict.fromkeys(PSI_KEYS)
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0] not in ("some", "full"):
            continue
        kind = parts[0]
        for item in parts[1:]:
            key, _, value = item.partition("=")
            if key == "total":
                out[f"{kind}_total_usec"] = int(value)
            elif key in ("avg10", "avg60", "avg300"):
                out[f"{kind}_{key}"] = float(value)
    return out


_PSI_AT = {b"avg10": 0, b"avg60": 1, b"avg300": 2, b"total": 3}


def psi_values(data: bytes) -> list[float | int | None]:
    """A PSI file as read (bytes) -> its values in PSI_KEYS order, as parse_psi gives them, by
    bytes operations (every scope and resource, every interval); absent lines give None."""
    out: list[float | int | None] = [None] * 8
    base = -1
    for tok in data.split():
        if tok == b"some":
            base = 0
        elif tok == b"full":
            base = 4
        else:
            key, eq, value = tok.partition(b"=")
            if not eq:
                base = -1  # a line of another kind: skipped, as parse_psi does
            elif base >= 0 and (i := _PSI_AT.get(key)) is not None:
                out[base + i] = int(value) if i == 3 else float(value)
    return out
