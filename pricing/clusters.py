"""GPU cluster rates: USD per GPU-hour by together.ai's `gpu_type`, from our hardware table
(`data/hardware.toml`, `[[cluster]]`) with the operator's rates winning."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from pricing.catalog import DATA

MINUTES_PER_HOUR = Decimal(60)


@dataclass(frozen=True)
class GpuHourRate:
    """One GPU of a cluster for an hour; `source` is "hardware-table" or "config"."""

    gpu_type: str
    hourly: Decimal
    source: str

    @property
    def per_minute(self) -> Decimal:
        """The rate per GPU-minute to nine places (as the ledger's price rows keep rates)."""
        return (self.hourly / MINUTES_PER_HOUR).quantize(Decimal("1e-9"))


def cluster_rates(overrides: Iterable[tuple[str, Decimal]] = ()) -> dict[str, GpuHourRate]:
    """Rates by upper-cased gpu_type: the table's, then the operator's (`[[cluster_rates]]`)."""
    table = tomllib.loads((DATA / "hardware.toml").read_text(encoding="utf-8"))
    rates = {}
    for entry in table.get("cluster", []):
        gpu_type = entry["gpu_type"].upper()
        rates[gpu_type] = GpuHourRate(gpu_type, Decimal(entry["hourly"]), "hardware-table")
    for gpu_type, hourly in overrides:
        rates[gpu_type.upper()] = GpuHourRate(gpu_type.upper(), hourly, "config")
    return rates
