"""Recorded usage into the ledger: each event id counted once (within a batch and against the
ledger), the rest bucketed, costed and written, by a push, an import chunk or a pull page, inside
the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from db.bulk import DirectWriter, LedgerWriter
from db.ledger import BucketFull
from jobs.usage.costing import Costing, bucket_records, bucket_refusal
from jobs.usage.records import UsageRecord
from pricing.catalog import Catalog


@dataclass(frozen=True)
class IngestResult:
    """What a push or import did: records counted, and records skipped as already counted."""

    accepted: int
    duplicates: int
    bad: int = 0


def apply_records(
    session: Session, catalog: Catalog, records: list[UsageRecord], *, source: str, now: datetime,
    writer: LedgerWriter | None = None,
) -> IngestResult:
    """Count each event id once (within `records` and against the ledger), then add the rest
    (through `writer`, an import's bulk writer; by default straight into the ledger)."""
    writer = writer or DirectWriter(session, source)
    first: dict[str, UsageRecord] = {}
    anonymous: list[UsageRecord] = []
    for record in records:
        if record.event_id is None:
            anonymous.append(record)
        elif record.event_id not in first:
            first[record.event_id] = record
    fresh = writer.claim_event_ids(first.keys(), now)
    counted = anonymous + [record for event_id, record in first.items() if event_id in fresh]
    costing = Costing(catalog, session)
    try:
        writer.add_buckets([costing.cost(row) for row in bucket_records(counted)])
    except BucketFull as full:  # the caller's transaction rolls back: nothing of these records stays
        raise bucket_refusal(counted, full.rows) from None
    return IngestResult(accepted=len(counted), duplicates=len(records) - len(counted))

