"""Price sync: together.ai's `/v1/models` and `/v1/hardware` refresh the catalog when a key is set.

A model's price is recorded with the time we first saw it, so usage before that keeps the
price it had; a changed price gets a new start-dated row (and the budget check says so)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select

from db.models import SyncedHardware, SyncedPrice
from jobs.config.context import Context
from jobs.usage.sources.http import RetryPolicy, SchemaError, SourceClient
from jobs.usage.sources.together_endpoints import parse_hardware
from pricing.grammar import MAX_RATE

log = logging.getLogger(__name__)
PRICED_TYPES = {"chat", "language", "code"}


@dataclass(frozen=True)
class SyncReport:
    new: int
    changed: int
    unchanged: int
    hardware: int


def parse_models(payload: Any) -> dict[str, tuple[Decimal, Decimal]]:
    """Model id → (input, output) USD per 1M tokens, for priced text models."""
    if not isinstance(payload, list):
        raise SchemaError("expected a JSON array of models")
    prices: dict[str, tuple[Decimal, Decimal]] = {}
    for item in payload:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise SchemaError("a model lacks an id")
        pricing = item.get("pricing")
        if item.get("type") not in PRICED_TYPES or not isinstance(pricing, dict):
            continue
        try:
            rates = (Decimal(str(pricing["input"])), Decimal(str(pricing["output"])))
        except (KeyError, InvalidOperation):
            raise SchemaError(f"model {item['id']} has no input/output pricing") from None
        if all(r.is_finite() and 0 <= r <= MAX_RATE for r in rates) and any(r > 0 for r in rates):
            prices[item["id"]] = rates
    return prices


def sync_prices(context: Context, *, now: datetime | None = None, retry: RetryPolicy | None = None) -> SyncReport:
    """Fetch together.ai's prices and hardware; record what is new or changed."""
    now = now or datetime.now(timezone.utc)
    settings = context.settings
    key = settings.together_api_key.get_secret_value() if settings.together_api_key else None
    base = settings.together_api_url.rstrip("/")
    with SourceClient(timeout=20, bearer=key, retry=retry) as client:
        models = client.get_json(f"{base}/models", None, parse_models)
        hardware = client.get_json(f"{base}/hardware", None, parse_hardware)
    new = changed = unchanged = 0
    with context.sessions() as session, session.begin():
        latest: dict[str, SyncedPrice] = {}
        for row in session.scalars(select(SyncedPrice).where(SyncedPrice.provider == "together")
                                   .order_by(SyncedPrice.effective_from)):
            latest[row.model] = row
        for model, (rate_in, rate_out) in models.items():
            current = latest.get(model)
            if current is not None and (current.input_rate, current.output_rate) == (rate_in, rate_out):
                unchanged += 1
                continue
            session.add(SyncedPrice(provider="together", model=model, effective_from=now,
                                    input_rate=rate_in, output_rate=rate_out))
            if current is None:
                new += 1
            else:
                changed += 1
                log.info("price of %s changed: %s/%s → %s/%s per 1M", model, current.input_rate,
                         current.output_rate, rate_in, rate_out)
        for hardware_id, per_minute in hardware.items():
            row = session.get(SyncedHardware, hardware_id)
            if row is None:
                session.add(SyncedHardware(id=hardware_id, cents_per_minute=per_minute * 100, updated_at=now))
            else:
                row.cents_per_minute, row.updated_at = per_minute * 100, now
    return SyncReport(new, changed, unchanged, len(hardware))
