"""genai-prices' text-token rates, read from the package once per installed version of it and
kept as JSON in the user's cache folder: importing genai-prices takes about 0.2 s, which every
command would otherwise pay at start-up (a quote included)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from importlib.util import find_spec
from pathlib import Path

FORMAT = 1  # bump when what a rate row holds changes: older cache files are then ignored


@dataclass(frozen=True, slots=True)
class BaseRate:
    """One model's rates in USD per 1M tokens from one start date (None: always)."""

    provider: str
    model: str
    input: Decimal
    output: Decimal
    cached_input: Decimal | None
    start: date | None


def base_rates(cache_dir: Path | None = None) -> list[BaseRate]:
    """Every rate genai-prices has, from the cache when this version of it was read before."""
    path = _cache_file(cache_dir or _user_cache_dir())
    if path is not None:
        try:
            return _decode(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError, KeyError):
            pass  # missing, or written by something else: read the package again
    rates = list(read_genai_prices())
    if path is not None:
        _write(path, rates)
    return rates


def read_genai_prices() -> Iterator[BaseRate]:
    """Every text-token price in the genai-prices package, with its start dates."""
    from genai_prices import data as genai

    for provider in genai.providers:
        for info in provider.models:
            variants = info.prices if isinstance(info.prices, list) else [_Unconditional(info.prices)]
            for variant in variants:
                constraint = getattr(variant, "constraint", None)
                if constraint is not None and not isinstance(constraint, genai.StartDateConstraint):
                    continue  # time-of-day discounts are not modelled
                start = constraint.start_date if constraint is not None else None
                rate = _to_rate(provider.id, info.id, variant.prices, start)
                if rate is not None:
                    yield rate


@dataclass(frozen=True)
class _Unconditional:
    prices: object
    constraint: None = None


def _rate(value: object) -> Decimal | None:
    if value is None:
        return None
    base = getattr(value, "base", value)  # tiered prices: the base tier
    return Decimal(str(base))


def _to_rate(provider: str, model: str, model_price: object, start: date | None) -> BaseRate | None:
    input_rate = _rate(getattr(model_price, "input_mtok", None))
    output_rate = _rate(getattr(model_price, "output_mtok", None))
    if input_rate is None and output_rate is None:
        return None
    return BaseRate(provider, model, input_rate or Decimal(0), output_rate or Decimal(0),
                    _rate(getattr(model_price, "cache_read_mtok", None)), start)


def _user_cache_dir() -> Path | None:
    base = os.environ.get("XDG_CACHE_HOME")
    if base:
        return Path(base) / "budget-guard"
    try:
        return Path.home() / ".cache" / "budget-guard"
    except RuntimeError:  # no home directory: no cache
        return None


def _cache_file(folder: Path | None) -> Path | None:
    """The cache file of the installed genai-prices (its data file's path, size and time), or None."""
    spec = find_spec("genai_prices")  # finds the package without importing it
    if folder is None or spec is None or spec.origin is None:
        return None
    data = Path(spec.origin).with_name("data.py")
    try:
        stat = data.stat()
    except OSError:
        return None
    return folder / f"genai-prices-v{FORMAT}-{stat.st_size}-{stat.st_mtime_ns}.json"


def _encode(rates: list[BaseRate]) -> list[list[str | None]]:
    return [[r.provider, r.model, str(r.input), str(r.output),
             None if r.cached_input is None else str(r.cached_input), None if r.start is None else r.start.isoformat()]
            for r in rates]


def _decode(rows: list[list[str | None]]) -> list[BaseRate]:
    return [BaseRate(provider, model, Decimal(rate_in), Decimal(rate_out),  # type: ignore[arg-type]
                     Decimal(cached) if cached is not None else None,
                     date.fromisoformat(start) if start is not None else None)
            for provider, model, rate_in, rate_out, cached, start in rows]


def _write(path: Path, rates: list[BaseRate]) -> None:
    """Write atomically (processes may race to it); a folder that cannot be written is no error."""
    import tempfile

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".genai-prices-", suffix=".tmp")
    except OSError:
        return
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(_encode(rates), handle, separators=(",", ":"))
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
