"""Costing and hourly bucketing: records summed into hour buckets, each bucket costed at the
price in effect at its time (and the catalog model its name resolves to), and the checks that
refuse usage an hour bucket could not hold, naming the first line that went into it.

A record's `model` is resolved through the catalog as quotes and budgets resolve names
(`llama-3.3-70b`, `gpt-4o`, an `[[aliases]]` name); the bucket stores the catalog model it
resolved to, which totals, rollups and budgets count it under. A name nothing matches stays
unpriced under its own name; `reprice` resolves again.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_CEILING, Decimal
from typing import Any

from sqlalchemy.orm import Session

from db.ledger import BucketRow
from db.models import MAX_BUCKET_NANOS, to_nanos
from db.prices import price_record_id
from jobs.usage import validation
from jobs.usage.records import IngestRejected, UsageRecord
from pricing.catalog import Catalog, Price
from pricing.costs import token_cost

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def check_costs(records: list[UsageRecord], catalog: Catalog) -> None:
    """IngestRejected if any hour bucket of `records` alone would cost more than a bucket may hold.

    Cheap first: tokens times the highest rate of each record's price, summed over all
    records, is almost always far below the limit; only when it is not are buckets costed."""
    lookup = price_lookup(catalog)
    ceilings: dict[tuple[str, str, int], int] = {}
    bound = 0
    for r in records:
        key = (r.model, r.mode, r.hour // 86400)
        ceiling = ceilings.get(key)
        if ceiling is None:
            price = lookup(r.model, r.mode, (_EPOCH + timedelta(seconds=r.hour)).date()) if r.mode != "dedicated" else None
            ceiling = ceilings[key] = _nanos_per_token(price)
        bound += (r.input_tokens + r.output_tokens) * ceiling
    if bound <= MAX_BUCKET_NANOS:
        return
    full = []
    for row in bucket_records(records):
        price = lookup(row.model, row.mode, row.bucket_start.date()) if row.mode != "dedicated" else None
        if price is not None:
            cost = to_nanos(token_cost(price, row.input_tokens, row.output_tokens, row.cached_input_tokens))
            if cost > MAX_BUCKET_NANOS:
                row.cost_nanos = cost
                full.append(row)
    if full:
        raise bucket_refusal(records, full)


def _nanos_per_token(price: Price | None) -> int:
    if price is None:
        return 0
    highest = max(price.input, price.output, price.cached_input or Decimal(0))
    return int((highest * 1000).to_integral_value(rounding=ROUND_CEILING))  # $/1M tokens -> nano-$/token


def bucket_refusal(records: Iterable[UsageRecord], full: list[BucketRow]) -> IngestRejected:
    """IngestRejected naming, for each bucket that would overflow, the first line that went into it."""
    keys = {(int(r.bucket_start.timestamp()), r.model, r.mode, r.project, r.feature, r.api_key, r.environment,
             r.tags): r for r in full}
    errors: dict[tuple[Any, ...], tuple[int, str]] = {}
    for record in records:
        key = record.bucket_key()
        if key in keys and key not in errors:
            row = keys[key]
            where = f"{row.model} at {row.bucket_start:%Y-%m-%d %H}:00 UTC" + (f", project {row.project}" if row.project else "")
            problem = validation.bucket_problem(
                {"tokens": max(row.input_tokens, row.output_tokens), "requests": row.requests}, row.cost_nanos
            ) or (f"its bucket would pass what one hour bucket holds (${validation.MAX_BUCKET_DOLLARS:,} "
                  f"or {validation.MAX_BUCKET_COUNT:,} tokens) with what the ledger has already")
            errors[key] = (record.line, f"the bucket of {where}: {problem}")
    return IngestRejected(sorted(errors.values()) or [(0, "a bucket would pass what one bucket holds")])


class PriceLookup:
    """`Catalog.usage_price` remembered per (model, mode, day) for one catalog; shared by every ingest
    that uses the same catalog object, so a push does not search the catalog again."""

    MAX_ENTRIES = 100_000

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._memo: dict[tuple[str, str, date], Price | None] = {}

    def __call__(self, model: str, mode: str, day: date) -> Price | None:
        key = (model, mode, day)
        try:
            return self._memo[key]
        except KeyError:
            if len(self._memo) >= self.MAX_ENTRIES:
                self._memo.clear()
            price = self._memo[key] = self.catalog.usage_price(model, mode, day)
            return price


_shared_lookup: PriceLookup | None = None


def price_lookup(catalog: Catalog) -> PriceLookup:
    """The shared lookup for `catalog` (a new one when the catalog was rebuilt)."""
    global _shared_lookup
    lookup = _shared_lookup
    if lookup is None or lookup.catalog is not catalog:
        lookup = _shared_lookup = PriceLookup(catalog)
    return lookup


class Costing:
    """Costs buckets at the price in effect at their time, and records which price it used and
    which catalog model the bucket's name resolved to.

    Price-row ids are cached for the life of one transaction (an ingest, a pull page, a reprice)."""

    def __init__(self, catalog: Catalog, session: Session) -> None:
        self.catalog = catalog
        self.session = session
        self._lookup = price_lookup(catalog)
        self._found: dict[tuple[str, str, date], tuple[Price | None, int | None]] = {}
        self._ids: dict[tuple[Price, str], int] = {}

    def price(self, model: str, mode: str, at: datetime) -> tuple[Price | None, int | None]:
        """The price for usage at `at`, and the id of its `prices` row (both None: unpriced)."""
        key = (model, mode, at.date())
        found = self._found.get(key)
        if found is None:
            price = self._lookup(*key)
            found = self._found[key] = (price, self.price_id(price, mode) if price is not None else None)
        return found

    def price_id(self, price: Price, mode: str) -> int:
        key = (price, mode)
        if key not in self._ids:
            self._ids[key] = price_record_id(self.session, price, mode)
        return self._ids[key]

    def catalog_model(self, model: str) -> str | None:
        """The catalog's name for `model` (None: nothing matches); the catalog remembers it."""
        match = self.catalog.match(model)
        return match.label if match is not None else None

    def cost(self, row: BucketRow) -> BucketRow:
        """Set `row`'s catalog model, cost and price from its name and tokens; dedicated token
        rows cost nothing per token."""
        row.catalog_model = self.catalog_model(row.model)
        if row.mode == "dedicated":
            row.cost_nanos, row.price_id = 0, None
            return row
        price, price_id = self.price(row.model, row.mode, row.bucket_start)
        if price is None:
            row.cost_nanos, row.price_id = None, None
        else:
            cost = token_cost(price, row.input_tokens, row.output_tokens, row.cached_input_tokens)
            row.cost_nanos, row.price_id = to_nanos(cost), price_id
        return row


def bucket_records(records: Iterable[UsageRecord]) -> list[BucketRow]:
    """Hour buckets summing the records (not yet costed)."""
    sums: dict[tuple[Any, ...], list[Any]] = {}
    for r in records:
        key = (r.hour, r.model, r.mode, r.project, r.feature, r.api_key, r.environment, r.tags)
        acc = sums.get(key)
        if acc is None:
            sums[key] = [r.input_tokens, r.cached_input_tokens, r.output_tokens, r.requests, r.reported_cost_nanos]
        else:
            acc[0] += r.input_tokens
            acc[1] += r.cached_input_tokens
            acc[2] += r.output_tokens
            acc[3] += r.requests
            if acc[4] is not None:
                acc[4] = None if r.reported_cost_nanos is None else acc[4] + r.reported_cost_nanos
    return list(bucket_rows(sums.items()))


def bucket_rows(sums: Iterable[tuple[tuple[Any, ...], list[Any]]]) -> Iterator[BucketRow]:
    """Hour buckets from (`UsageRecord.bucket_key()`, [input, cached input, output, requests,
    reported cost]) pairs."""
    hours: dict[int, datetime] = {}
    for (hour, model, mode, project, feature, api_key, environment, tags), (tin, tcached, tout, n, reported) in sums:
        start = hours.get(hour)
        if start is None:
            start = hours[hour] = _EPOCH + timedelta(seconds=hour)
        yield BucketRow(
            bucket_start=start, width="1h", model=model, mode=mode, project=project, feature=feature,
            api_key=api_key, environment=environment, tags=tags, input_tokens=tin, cached_input_tokens=tcached,
            output_tokens=tout, requests=n, reported_cost_nanos=reported,
        )
