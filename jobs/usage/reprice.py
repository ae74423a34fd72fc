"""Re-cost recorded usage with the current catalog, on purpose only (after a price correction,
or a catalog or `[[aliases]]` change that lets more names resolve).

Token buckets (serverless and batch) from a date on resolve their recorded model name again
and get the price in effect at their own time under the catalog as it is now; dedicated
uptime keeps the hardware price it was recorded at. All in one transaction: a reprice
applies whole or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal

from db.ledger import BucketRow
from db.models import from_nanos
from db.prices import reprice_candidates, set_bucket_costs
from jobs.config.context import Context
from jobs.usage.costing import Costing


@dataclass(frozen=True)
class RepriceResult:
    """What a reprice looked at and changed; costs are of priced rows, before and after."""

    rows: int
    changed: int
    old_cost: Decimal
    new_cost: Decimal
    newly_priced: int
    newly_unpriced: int
    renamed: dict[str, str] = field(default_factory=dict)  # recorded name -> the model it now counts as

    @property
    def change(self) -> Decimal:
        return self.new_cost - self.old_cost


def reprice(context: Context, since: datetime, *, dry_run: bool = False) -> RepriceResult:
    """Re-cost token buckets starting at or after `since`; with `dry_run`, only report."""
    rows = changed = newly_priced = newly_unpriced = 0
    old_nanos = new_nanos = 0
    renamed: dict[str, str] = {}
    with context.sessions() as session:  # commits at the end unless dry_run; any error rolls back
        costing = Costing(context.catalog, session)
        for batch in reprice_candidates(session, since.astimezone(timezone.utc)):
            updates = []
            for c in batch:
                rows += 1
                row = costing.cost(
                    BucketRow(
                        bucket_start=c.bucket_start, width="1h", model=c.model, mode=c.mode,
                        input_tokens=c.input_tokens, cached_input_tokens=c.cached_input_tokens,
                        output_tokens=c.output_tokens,
                    )
                )
                old_nanos += c.cost_nanos or 0
                new_nanos += row.cost_nanos or 0
                counted_as = row.catalog_model or c.model
                if (row.cost_nanos, row.price_id, counted_as) != (c.cost_nanos, c.price_id, c.catalog_model or c.model):
                    changed += 1
                    newly_priced += c.cost_nanos is None and row.cost_nanos is not None
                    newly_unpriced += c.cost_nanos is not None and row.cost_nanos is None
                    if counted_as != (c.catalog_model or c.model):
                        renamed[c.model] = counted_as
                if (row.cost_nanos, row.price_id, row.catalog_model) != (c.cost_nanos, c.price_id, c.catalog_model):
                    updates.append((c.id, row.cost_nanos, row.price_id, row.catalog_model))
            if not dry_run:
                set_bucket_costs(session, updates)
        if not dry_run:
            session.commit()
    return RepriceResult(rows, changed, from_nanos(old_nanos), from_nanos(new_nanos), newly_priced, newly_unpriced,
                         renamed)
