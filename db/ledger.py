"""The usage ledger's writes: buckets (pulled: replace; pushed: add) and event-id dedupe.

Hot paths are set-based: dialect upserts (`INSERT ... ON CONFLICT`) run as multi-row VALUES
batches, never one ORM object per row. Money is integer nano-dollars here; callers convert.
Reading totals back is db.totals; the prices that costed usage, db.prices; pull cursors,
db.source_state.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from db.models import MAX_BUCKET_COUNT, MAX_BUCKET_NANOS, SeenEvent, UsageBucket

KEY_COLUMNS = (
    "bucket_start", "width", "source", "model", "mode", "project", "feature", "api_key", "environment", "tags",
)
COUNT_COLUMNS = ("input_tokens", "cached_input_tokens", "output_tokens", "requests", "uptime_minutes")
BATCH_SIZE = 5_000
CLAIM_BATCH = 500  # rows per INSERT: 1,000 parameters, under every engine's limit
WRITE_BATCH = 500  # bucket rows per INSERT: 9,500 parameters (SQLite allows 32,766, PostgreSQL 65,535)
# Core tables, not ORM entities: bulk statements skip the ORM's per-row bookkeeping.
BUCKETS = UsageBucket.__table__
SEEN = SeenEvent.__table__


@dataclass(slots=True)
class BucketRow:
    """One bucket's usage as written to the ledger; `cost_nanos` None means unpriced."""

    bucket_start: datetime
    width: str
    model: str
    mode: str
    project: str = ""
    feature: str = ""
    api_key: str = ""
    environment: str = ""
    tags: str = ""
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0
    uptime_minutes: int = 0
    cost_nanos: int | None = 0
    price_id: int | None = None
    catalog_model: str | None = None  # the catalog model `model` resolved to; None: none matched
    reported_cost_nanos: int | None = None  # the source's own cost (LiteLLM); None: not reported

    def key(self) -> tuple[Any, ...]:
        """Everything that identifies the bucket within one source."""
        return (
            self.bucket_start, self.width, self.model, self.mode, self.project, self.feature, self.api_key,
            self.environment, self.tags,
        )

    def absorb(self, other: "BucketRow") -> None:
        """Add `other`'s usage (same key) into this row; unpriced wins over priced."""
        self.input_tokens += other.input_tokens
        self.cached_input_tokens += other.cached_input_tokens
        self.output_tokens += other.output_tokens
        self.requests += other.requests
        self.uptime_minutes += other.uptime_minutes
        if self.cost_nanos is None or other.cost_nanos is None:
            self.cost_nanos, self.price_id = None, None
        else:
            self.cost_nanos += other.cost_nanos
            self.price_id = other.price_id or self.price_id
        self.catalog_model = other.catalog_model or self.catalog_model
        self.reported_cost_nanos = add_reported(self.reported_cost_nanos, other.reported_cost_nanos)


def add_reported(a: int | None, b: int | None) -> int | None:
    """Two reported costs summed; unknown (None) if either is, as for our own cost."""
    return None if a is None or b is None else a + b


class BucketFull(ValueError):
    """Writing `rows` would take their buckets past what a bucket holds (MAX_BUCKET_COUNT,
    MAX_BUCKET_NANOS); the statement's transaction must be rolled back."""

    def __init__(self, rows: list[BucketRow]) -> None:
        super().__init__(f"{len(rows)} bucket(s) would pass what one bucket holds")
        self.rows = rows


def over_capacity(row: BucketRow) -> bool:
    """Whether one row on its own holds more than a bucket may."""
    return (max(row.input_tokens, row.cached_input_tokens, row.output_tokens, row.requests, row.uptime_minutes)
            > MAX_BUCKET_COUNT or max(row.cost_nanos or 0, row.reported_cost_nanos or 0) > MAX_BUCKET_NANOS)


def merge_rows(rows: Iterable[BucketRow]) -> list[BucketRow]:
    """Rows with the same key summed into one (a statement must not touch a row twice)."""
    merged: dict[tuple[Any, ...], BucketRow] = {}
    for row in rows:
        key = row.key()
        existing = merged.get(key)
        if existing is None:
            merged[key] = row
        else:
            existing.absorb(row)
    return list(merged.values())


def chunks(items: Sequence[Any], size: int = BATCH_SIZE) -> Iterator[Sequence[Any]]:
    """`items` in consecutive slices of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


WRITE_COLUMNS = (*KEY_COLUMNS, *COUNT_COLUMNS, "cost_nanos", "price_id", "catalog_model", "reported_cost_nanos")
SET_ON_CONFLICT = ", ".join(
    f"{c} = excluded.{c}" for c in (*COUNT_COLUMNS, "cost_nanos", "price_id", "catalog_model", "reported_cost_nanos")
)
ADD_ON_CONFLICT = ", ".join(
    [f"{c} = usage_buckets.{c} + excluded.{c}" for c in COUNT_COLUMNS]
    + ["cost_nanos = usage_buckets.cost_nanos + excluded.cost_nanos",  # NULL if either is NULL: unpriced
       "price_id = COALESCE(excluded.price_id, usage_buckets.price_id)",
       "catalog_model = COALESCE(excluded.catalog_model, usage_buckets.catalog_model)",
       "reported_cost_nanos = usage_buckets.reported_cost_nanos + excluded.reported_cost_nanos"]
) + " WHERE " + " AND ".join(  # a bucket never passes its capacity: such a row is left out, and counted
    [f"usage_buckets.{c} <= {MAX_BUCKET_COUNT} - excluded.{c}" for c in COUNT_COLUMNS]
    + [f"(usage_buckets.{c} IS NULL OR excluded.{c} IS NULL OR usage_buckets.{c} <= {MAX_BUCKET_NANOS} - excluded.{c})"
       for c in ("cost_nanos", "reported_cost_nanos")]
)


def _write_buckets(session: Session, source: str, rows: list[BucketRow], on_conflict: str) -> int:
    """INSERT ... ON CONFLICT (bucket key) DO UPDATE, as multi-row VALUES of driver parameters.

    The hot path of push and import: each distinct bucket start is converted once, and no
    per-row bound-parameter processing happens. `rows` must have distinct keys. BucketFull if
    a row, or a bucket it adds to, would hold more than a bucket may (nothing is then kept:
    the caller's transaction rolls back)."""
    if not rows:
        return 0
    full = [r for r in rows if over_capacity(r)]
    if full:
        raise BucketFull(full)
    connection = session.connection()
    dialect = connection.dialect
    bind = BUCKETS.c.bucket_start.type.dialect_impl(dialect).bind_processor(dialect)
    starts: dict[datetime, Any] = {}
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    row_marks = "(" + ", ".join([mark] * len(WRITE_COLUMNS)) + ")"
    head = f"INSERT INTO usage_buckets ({', '.join(WRITE_COLUMNS)}) VALUES "
    tail = f" ON CONFLICT ({', '.join(KEY_COLUMNS)}) DO UPDATE SET {on_conflict}"
    rows = sorted(rows, key=lambda r: (r.bucket_start, r.width, r.model))  # roughly index order: warm pages
    for chunk in chunks(rows, WRITE_BATCH):
        params: list[Any] = []
        for r in chunk:
            start = starts.get(r.bucket_start)
            if start is None:
                start = starts[r.bucket_start] = bind(r.bucket_start) if bind else r.bucket_start
            params += (
                start, r.width, source, r.model, r.mode, r.project, r.feature, r.api_key, r.environment, r.tags,
                r.input_tokens, r.cached_input_tokens, r.output_tokens, r.requests, r.uptime_minutes,
                r.cost_nanos, r.price_id, r.catalog_model, r.reported_cost_nanos,
            )
        written = connection.exec_driver_sql(head + ", ".join([row_marks] * len(chunk)) + tail, tuple(params))
        if written.rowcount != len(chunk):
            raise BucketFull(_overflowing(session, source, list(chunk)))
    return len(rows)


def _overflowing(session: Session, source: str, rows: list[BucketRow]) -> list[BucketRow]:
    """Which of `rows` (just refused by the capacity check) their buckets could not take."""
    starts = {r.bucket_start for r in rows}
    stored = {
        (b.bucket_start, b.width, b.model, b.mode, b.project, b.feature, b.api_key, b.environment, b.tags): b
        for b in session.execute(
            select(UsageBucket).where(UsageBucket.source == source, UsageBucket.bucket_start.in_(starts))
        ).scalars()
    }
    full = []
    for row in rows:
        b = stored.get(row.key())
        if b is None:
            continue
        total = BucketRow(row.bucket_start, row.width, row.model, row.mode, input_tokens=b.input_tokens,
                          cached_input_tokens=b.cached_input_tokens, output_tokens=b.output_tokens,
                          requests=b.requests, uptime_minutes=b.uptime_minutes, cost_nanos=b.cost_nanos,
                          reported_cost_nanos=b.reported_cost_nanos)
        total.absorb(row)
        if over_capacity(total):
            full.append(row)
    return full or rows


def upsert_pulled_buckets(
    session: Session,
    source: str,
    rows: Iterable[BucketRow],
    *,
    replace_window: tuple[datetime, datetime] | None = None,
) -> int:
    """Write what a pull read: each bucket's totals replace what `source` had for that key.

    With `replace_window=(since, until)`, everything `source` held with a bucket start in
    that window is removed first, so a group the source no longer reports disappears too.
    Either way, writing the same pull twice leaves the ledger as writing it once."""
    if replace_window is not None:
        since, until = replace_window
        session.execute(
            delete(UsageBucket).where(
                UsageBucket.source == source, UsageBucket.bucket_start >= since, UsageBucket.bucket_start < until
            )
        )
    return _write_buckets(session, source, merge_rows(rows), SET_ON_CONFLICT)


def add_buckets(session: Session, source: str, rows: Iterable[BucketRow]) -> int:
    """Add usage into `source`'s buckets (push, import, endpoint uptime): counts and cost sum.

    A bucket that is unpriced in part becomes unpriced (NULL cost) as a whole: it shows
    as unpriced tokens, never as a smaller dollar amount."""
    return _write_buckets(session, source, merge_rows(rows), ADD_ON_CONFLICT)


def claim_event_ids(session: Session, event_ids: Collection[str], seen_at: datetime) -> set[str]:
    """Record `event_ids` as counted; return those that were new (the rest were seen before).

    INSERT ... ON CONFLICT DO NOTHING RETURNING, so two concurrent requests carrying the
    same id cannot both count it. This is the push hot path: rows go as multi-row VALUES
    of plain driver parameters (seen_at converted once), not one bound-parameter pass per row."""
    if not event_ids:
        return set()
    connection = session.connection()
    dialect = connection.dialect
    bind = SEEN.c.seen_at.type.dialect_impl(dialect).bind_processor(dialect)
    when = bind(seen_at) if bind else seen_at
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    fresh: set[str] = set()
    ids = sorted(event_ids)  # in index order: B-tree inserts stay on warm pages
    for chunk in chunks(ids, CLAIM_BATCH):
        values = ", ".join([f"({mark}, {mark})"] * len(chunk))
        params: list[Any] = []
        for event_id in chunk:
            params += (event_id, when)
        result = connection.exec_driver_sql(
            f"INSERT INTO seen_events (event_id, seen_at) VALUES {values} "
            "ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
            tuple(params),
        )
        fresh.update(row[0] for row in result)
    return fresh


def seen_event_ids(session: Session, event_ids: Collection[str]) -> set[str]:
    """Those of `event_ids` already counted (a read: claim with `claim_event_ids`)."""
    found: set[str] = set()
    ids = sorted(event_ids)
    for chunk in chunks(ids, CLAIM_BATCH):
        found.update(session.scalars(select(SeenEvent.event_id).where(SeenEvent.event_id.in_(chunk))))
    return found
