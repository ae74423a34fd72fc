"""The usage ledger's queries: write buckets (pulled: replace; pushed: add), dedupe events,
record the prices that costed usage, and read totals back.

Hot paths are set-based: dialect upserts (`INSERT ... ON CONFLICT`) run as executemany
batches, never one ORM object per row. Money is integer nano-dollars here; callers convert.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from decimal import Decimal
from typing import Any, Literal, Protocol

from sqlalchemy import Select, case, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db.models import (
    MAX_BUCKET_COUNT,
    MAX_BUCKET_NANOS,
    PriceRecord,
    SeenEvent,
    SourceState,
    UsageBucket,
    counted_model,
    from_nanos,
)

KEY_COLUMNS = (
    "bucket_start", "width", "source", "model", "mode", "project", "feature", "api_key", "environment", "tags",
)
COUNT_COLUMNS = ("input_tokens", "cached_input_tokens", "output_tokens", "requests", "uptime_minutes")
GROUPS = ("model", "project", "feature", "mode", "api_key", "environment", "source")
Group = Literal["model", "project", "feature", "mode", "api_key", "environment", "source"]
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


@dataclass(frozen=True)
class GroupTotal:
    """Totals of one group (a model, project, feature or mode) over a period."""

    key: str
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    requests: int
    uptime_minutes: int
    cost: Decimal | None  # None: nothing in the group is priced
    unpriced_tokens: int
    unpriced_minutes: int = 0  # dedicated uptime on hardware without a known price

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


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


def _insert(session: Session) -> Any:
    """The dialect's INSERT construct, which knows ON CONFLICT."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert
    if name == "sqlite":
        return sqlite.insert
    raise NotImplementedError(f"the ledger supports SQLite and PostgreSQL, not {name}")


def _chunks(items: Sequence[Any], size: int = BATCH_SIZE) -> Iterator[Sequence[Any]]:
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
    for chunk in _chunks(rows, WRITE_BATCH):
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


def add_pushed_buckets(session: Session, rows: Iterable[BucketRow], source: str = "push") -> int:
    """Add pushed or imported usage (already deduplicated) to the ledger."""
    return add_buckets(session, source, rows)


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
    for chunk in _chunks(ids, CLAIM_BATCH):
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
    session.execute(_insert(session)(PriceRecord).values(**values).on_conflict_do_nothing())
    found = session.scalar(query)
    assert found is not None
    return found


def totals(
    session: Session,
    since: datetime | None,
    until: datetime | None,
    by: Group = "model",
    *,
    source: str | None = None,
) -> list[GroupTotal]:
    """Totals per group of buckets starting in [since, until) (of one source, if given), most expensive first.

    `cost` sums priced buckets only (None when the group has none); tokens of unpriced
    buckets are in `unpriced_tokens`, so unpriced usage never reads as $0. Models are
    grouped under the catalog model their names resolved to."""
    if by not in GROUPS:
        raise ValueError(f"cannot group by {by!r}; use one of {', '.join(GROUPS)}")
    column = counted_model if by == "model" else getattr(UsageBucket, by)
    unpriced = case(
        (UsageBucket.cost_nanos.is_(None), UsageBucket.input_tokens + UsageBucket.output_tokens), else_=0
    )
    unpriced_minutes = case((UsageBucket.cost_nanos.is_(None), UsageBucket.uptime_minutes), else_=0)
    query: Select[Any] = select(
        column,
        func.sum(UsageBucket.input_tokens),
        func.sum(UsageBucket.cached_input_tokens),
        func.sum(UsageBucket.output_tokens),
        func.sum(UsageBucket.requests),
        func.sum(UsageBucket.uptime_minutes),
        func.sum(UsageBucket.cost_nanos),
        func.sum(unpriced),
        func.sum(unpriced_minutes),
    ).group_by(column)
    if since is not None:
        query = query.where(UsageBucket.bucket_start >= since)
    if until is not None:
        query = query.where(UsageBucket.bucket_start < until)
    if source is not None:
        query = query.where(UsageBucket.source == source)
    groups = [
        GroupTotal(
            key=key,
            input_tokens=int(tin or 0),
            cached_input_tokens=int(tcached or 0),
            output_tokens=int(tout or 0),
            requests=int(requests or 0),
            uptime_minutes=int(minutes or 0),
            cost=from_nanos(int(nanos)) if nanos is not None else None,
            unpriced_tokens=int(unpriced_tokens or 0),
            unpriced_minutes=int(unpriced_mins or 0),
        )
        for key, tin, tcached, tout, requests, minutes, nanos, unpriced_tokens, unpriced_mins in session.execute(query)
    ]
    groups.sort(key=lambda g: (-(g.cost or 0), -g.tokens, g.key))
    return groups


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
        yield [RepriceCandidate(*row) for row in rows]
        last_id = rows[-1][0]


def set_bucket_costs(session: Session, costs: Sequence[tuple[int, int | None, int | None, str | None]]) -> int:
    """Set (id, cost_nanos, price_id, catalog_model) on existing buckets, one executemany per batch."""
    for chunk in _chunks(costs):
        session.execute(
            update(UsageBucket),
            [{"id": id_, "cost_nanos": cost, "price_id": price_id, "catalog_model": catalog_model}
             for id_, cost, price_id, catalog_model in chunk],
        )
    return len(costs)


def source_state(session: Session, name: str) -> SourceState | None:
    """A pulled source's cursor and last outcomes, if it ran before."""
    return session.get(SourceState, name)


def record_source_cursor(session: Session, name: str, cursor: datetime) -> None:
    """Move a source's cursor forward (never back): the next pull starts there, less its overlap."""
    state = session.get(SourceState, name)
    if state is None:
        session.add(SourceState(name=name, cursor=cursor))
    elif state.cursor is None or cursor > state.cursor:
        state.cursor = cursor
    session.flush()


def record_source_outcome(session: Session, name: str, at: datetime, *, error: str | None = None,
                          newest: datetime | None = None) -> None:
    """Note a pull attempt: its time, and either success (with the newest bucket that held
    usage, if any) or the error (one line), and since when it has been failing.

    The last error stays after a later success, so `last_error_at < last_success` reads as
    "failed once, recovered since"."""
    state = session.get(SourceState, name)
    if state is None:
        state = SourceState(name=name)
        session.add(state)
    state.last_attempt = at
    if error is None:
        state.last_success = at
        state.failing_since = None
        if state.last_data_at is None or (newest is not None and newest > state.last_data_at):
            state.last_data_at = newest or at
    else:
        state.last_error = error[:2000]
        state.last_error_at = at
        state.failing_since = state.failing_since or at
    session.flush()


def record_source_note(session: Session, name: str, note: str, at: datetime) -> None:
    """Keep what a pull had to say (broken lines skipped, a lower-bound count) until the next note."""
    state = session.get(SourceState, name)
    if state is None:
        state = SourceState(name=name)
        session.add(state)
    state.last_note = note[:4000]
    state.last_note_at = at
    session.flush()


def seen_event_ids(session: Session, event_ids: Collection[str]) -> set[str]:
    """Those of `event_ids` already counted (a read: claim with `claim_event_ids`)."""
    found: set[str] = set()
    ids = sorted(event_ids)
    for chunk in _chunks(ids, CLAIM_BATCH):
        found.update(session.scalars(select(SeenEvent.event_id).where(SeenEvent.event_id.in_(chunk))))
    return found


@dataclass(frozen=True)
class ModelDay:
    """One model's token usage from one source on one UTC day, our cost and any reported cost."""

    day: date
    model: str
    source: str
    input_tokens: int
    output_tokens: int
    cost_nanos: int  # of the priced buckets
    unpriced_tokens: int
    reported_nanos: int  # what the source reported, over the buckets it reported for
    ours_where_reported_nanos: int  # our cost of those same buckets
    unpriced_where_reported: int  # tokens of those buckets we could not price


def model_days(session: Session, since: datetime, until: datetime,
               modes: Collection[str] = ("serverless", "batch")) -> list[ModelDay]:
    """Token usage per UTC day, model (the catalog's name where one matched) and source for
    buckets starting in [since, until)."""
    tokens = UsageBucket.input_tokens + UsageBucket.output_tokens
    reported = UsageBucket.reported_cost_nanos.is_not(None)
    rows = session.execute(
        select(
            UsageBucket.bucket_start, counted_model, UsageBucket.source,
            func.sum(UsageBucket.input_tokens), func.sum(UsageBucket.output_tokens),
            func.sum(UsageBucket.cost_nanos),
            func.sum(case((UsageBucket.cost_nanos.is_(None), tokens), else_=0)),
            func.sum(UsageBucket.reported_cost_nanos),
            func.sum(case((reported, UsageBucket.cost_nanos), else_=0)),
            func.sum(case((reported & UsageBucket.cost_nanos.is_(None), tokens), else_=0)),
        )
        .where(UsageBucket.bucket_start >= since, UsageBucket.bucket_start < until, UsageBucket.mode.in_(modes))
        .group_by(UsageBucket.bucket_start, counted_model, UsageBucket.source)
    ).all()
    days: dict[tuple[date, str, str], list[int]] = {}
    for start, model, source, *sums in rows:
        key = (start.astimezone(timezone.utc).date(), model, source)
        acc = days.setdefault(key, [0] * 7)
        for i, value in enumerate(sums):
            acc[i] += int(value or 0)
    return [ModelDay(day, model, source, *acc) for (day, model, source), acc in sorted(days.items())]


def bucket_count(session: Session) -> int:
    """How many bucket rows the ledger holds."""
    return int(session.scalar(select(func.count()).select_from(UsageBucket)) or 0)
