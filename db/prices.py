"""The prices that costed usage: a `prices` row per distinct set of rates, and re-costing
existing buckets when the catalog is corrected."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from decimal import Decimal
from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.engine import dialect_insert
from db.ledger import BATCH_SIZE, chunks
from db.models import PriceRecord, UsageBucket


class PriceLike(Protocol):
    """What the ledger needs of a catalog price (duck-typed: db imports nothing of ours)."""

    provider: str
    model: str
    source: str
    input: Decimal
    output: Decimal
    cached_input: Decimal | None
    effective_from: date | None


def price_record_id(session: Session, price: PriceLike, mode: str) -> int:
    """The id of the `prices` row for a catalog price in `mode`, created if new.

    Cached input without a rate of its own is recorded at the input rate."""
    return price_row_id(
        session,
        provider=price.provider,
        model=price.model,
        mode=mode,
        source=price.source,
        effective_from=datetime.combine(price.effective_from, time(0), timezone.utc) if price.effective_from else None,
        input_rate=price.input,
        cached_rate=price.cached_input if price.cached_input is not None else price.input,
        output_rate=price.output,
    )


def price_row_id(
    session: Session,
    *,
    provider: str,
    model: str,
    mode: str,
    source: str,
    effective_from: datetime | None,
    input_rate: Decimal,
    cached_rate: Decimal,
    output_rate: Decimal,
    minute_rate: Decimal = Decimal(0),
) -> int:
    """The id of the `prices` row with exactly these rates, created if new."""
    values = {
        "provider": provider, "model": model, "mode": mode, "source": source, "effective_from": effective_from,
        "input_rate": input_rate, "cached_rate": cached_rate, "output_rate": output_rate, "minute_rate": minute_rate,
    }
    query = select(PriceRecord.id).where(
        *(getattr(PriceRecord, name).is_not_distinct_from(value) for name, value in values.items())
    ).order_by(PriceRecord.id).limit(1)
    found = session.scalar(query)
    if found is not None:
        return found
    # NULL start dates never conflict in a unique index; the select above keeps them single
    # within a process, and a rare concurrent twin is harmless (same rates, either id works).
    session.execute(dialect_insert(session, PriceRecord).values(**values).on_conflict_do_nothing())
    found = session.scalar(query)
    if found is None:
        raise RuntimeError(f"no prices row for {provider} {model} ({mode}) after inserting it")
    return found


@dataclass(frozen=True)
class RepriceCandidate:
    """A token bucket as re-costing needs to see it."""

    id: int
    bucket_start: datetime
    model: str
    mode: str
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    cost_nanos: int | None
    price_id: int | None
    catalog_model: str | None = None


def reprice_candidates(
    session: Session, since: datetime, modes: Collection[str] = ("serverless", "batch"), batch_size: int = BATCH_SIZE
) -> Iterator[list[RepriceCandidate]]:
    """Token buckets from `since` on, in batches by id, for re-costing with a corrected catalog."""
    last_id = 0
    while True:
        rows = session.execute(
            select(
                UsageBucket.id, UsageBucket.bucket_start, UsageBucket.model, UsageBucket.mode,
                UsageBucket.input_tokens, UsageBucket.cached_input_tokens, UsageBucket.output_tokens,
                UsageBucket.cost_nanos, UsageBucket.price_id, UsageBucket.catalog_model,
            )
            .where(UsageBucket.bucket_start >= since, UsageBucket.mode.in_(modes), UsageBucket.id > last_id)
            .order_by(UsageBucket.id)
            .limit(batch_size)
        ).all()
        if not rows:
            return
        yield [RepriceCandidate(id_, start, model, mode, tin, tcached, tout, cost, price_id, catalog_model)
               for id_, start, model, mode, tin, tcached, tout, cost, price_id, catalog_model in rows]
        last_id = rows[-1][0]


def set_bucket_costs(session: Session, costs: Sequence[tuple[int, int | None, int | None, str | None]]) -> int:
    """Set (id, cost_nanos, price_id, catalog_model) on existing buckets, one executemany per batch."""
    for chunk in chunks(costs):
        session.execute(
            update(UsageBucket),
            [{"id": id_, "cost_nanos": cost, "price_id": price_id, "catalog_model": catalog_model}
             for id_, cost, price_id, catalog_model in chunk],
        )
    return len(costs)
