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
