"""Reading the usage ledger back: totals per group over a period, per model and day, and its size.

Unpriced usage is counted apart (`unpriced_tokens`), never as $0; models count under the
catalog model their names resolved to."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session

from db.models import UsageBucket, counted_model, from_nanos

GROUPS = ("model", "project", "feature", "mode", "api_key", "environment", "source")
Group = Literal["model", "project", "feature", "mode", "api_key", "environment", "source"]


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
