"""Read-side rollups of the ledger: spend and tokens per local day in the budget zone.

Budgets, forecasts, the digest and batch advice read `daily_usage`, not raw hourly buckets,
so a run over months of buckets stays fast. Triggers on `usage_buckets` (migration 0002)
mark each changed UTC date in `dirty_days`; before reading, the days they touch are
recomputed for the configured zone. The first read in a zone builds every day once."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, Date, Index, Integer, String, and_, delete, func, insert, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from db.models import Base, UsageBucket, UTCDateTime, counted_model

OFF_HOURS_START, OFF_HOURS_END = 20, 8  # local time; weekends are off-hours all day


class DailyUsage(Base):
    """One local day of one model (as counted: the catalog model), mode and set of dimensions, in one zone."""

    __tablename__ = "daily_usage"
    __table_args__ = (
        Index("uq_daily_usage_key", "zone", "day", "model", "mode", "project", "feature", "api_key", "tags",
              unique=True),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    zone: Mapped[str] = mapped_column(String(64))
    day: Mapped[date] = mapped_column(Date)
    model: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(String(16))
    project: Mapped[str] = mapped_column(String(128))
    feature: Mapped[str] = mapped_column(String(128))
    api_key: Mapped[str] = mapped_column(String(128))
    tags: Mapped[str] = mapped_column(String(512))
    input_tokens: Mapped[int] = mapped_column(BigInteger)
    cached_input_tokens: Mapped[int] = mapped_column(BigInteger)
    output_tokens: Mapped[int] = mapped_column(BigInteger)
    requests: Mapped[int] = mapped_column(BigInteger)
    uptime_minutes: Mapped[int] = mapped_column(BigInteger)
    cost_nanos: Mapped[int] = mapped_column(BigInteger)
    unpriced_tokens: Mapped[int] = mapped_column(BigInteger)
    offhours_tokens: Mapped[int] = mapped_column(BigInteger)
    peak_hour_tokens: Mapped[int] = mapped_column(BigInteger)
    active_hours: Mapped[int] = mapped_column(Integer)


class DirtyDay(Base):
    """A UTC date whose buckets changed since the rollups last read it (kept by triggers)."""

    __tablename__ = "dirty_days"

    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    changes: Mapped[int] = mapped_column(BigInteger, default=0)


class RollupZone(Base):
    """A zone whose rollups have been built (only the configured zone is kept)."""

    __tablename__ = "rollup_zones"

    zone: Mapped[str] = mapped_column(String(64), primary_key=True)
    built_at: Mapped[datetime] = mapped_column(UTCDateTime())


@dataclass(frozen=True, slots=True)
class DailyRow:
    """One local day of one model, mode and set of dimensions."""

    day: date
    model: str
    mode: str
    project: str
    feature: str
    api_key: str
    tags: str
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    requests: int
    uptime_minutes: int
    cost_nanos: int
    unpriced_tokens: int
    offhours_tokens: int = 0
    peak_hour_tokens: int = 0
    active_hours: int = 0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def local_day(instant: datetime, zone: ZoneInfo) -> date:
    return instant.astimezone(zone).date()


def _affected_local_days(utc_day: date, zone: ZoneInfo) -> set[date]:
    start = datetime(utc_day.year, utc_day.month, utc_day.day, tzinfo=timezone.utc)
    return {local_day(start, zone), local_day(start + timedelta(hours=23, minutes=59), zone)}


def refresh_daily(session: Session, zone: ZoneInfo) -> int:
    """Recompute the local days whose buckets changed; returns how many days were rebuilt."""
    name = zone.key
    if session.get_bind().dialect.name == "postgresql":
        # One refresher at a time per schema (replicas and tests may share the server).
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.daily_usage'))"))
    built = session.get(RollupZone, name) is not None
    dirty = session.execute(select(DirtyDay.day, DirtyDay.changes)).all()
    if built:
        days = set()
        for utc_text, _ in dirty:
            days |= _affected_local_days(date.fromisoformat(utc_text), zone)
    else:
        session.execute(delete(DailyUsage))
        session.execute(delete(RollupZone))
        first, last = session.execute(select(func.min(UsageBucket.bucket_start), func.max(UsageBucket.bucket_start))).one()
        days = set()
        if first is not None:
            day, end = local_day(first, zone), local_day(last, zone)
            while day <= end:
                days.add(day)
                day += timedelta(days=1)
        session.add(RollupZone(zone=name, built_at=datetime.now(timezone.utc)))
    for day in sorted(days):  # a day at a time: a week of 4M-bucket ledger at once peaked at 370 MB
        _rebuild(session, zone, day)
    for utc_text, changes in dirty:
        session.execute(delete(DirtyDay).where(and_(DirtyDay.day == utc_text, DirtyDay.changes == changes)))
    return len(days)


def _rebuild(session: Session, zone: ZoneInfo, day: date) -> None:
    """Aggregate the buckets of local `day` into daily_usage rows."""
    start, end = local_midnight(day, zone), local_midnight(day + timedelta(days=1), zone)
    b = UsageBucket
    result = session.execute(
        select(b.bucket_start, counted_model, b.mode, b.project, b.feature, b.api_key, b.tags, b.input_tokens,
               b.cached_input_tokens, b.output_tokens, b.requests, b.uptime_minutes, b.cost_nanos)
        .where(b.bucket_start >= start, b.bucket_start < end)
    )
    sums: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0] * 9)
    hours: dict[tuple[Any, ...], dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for (at, model, mode, project, feature, api_key, tags, tin, tcached, tout, requests, uptime, cost) in result:
        local = at.astimezone(zone)
        key = (local.date(), model, mode, project, feature, api_key, tags)
        acc = sums[key]
        tokens = tin + tout
        acc[0] += tin
        acc[1] += tcached
        acc[2] += tout
        acc[3] += requests
        acc[4] += uptime
        if cost is None:
            acc[6] += tokens
        else:
            acc[5] += cost
        if local.weekday() >= 5 or local.hour >= OFF_HOURS_START or local.hour < OFF_HOURS_END:
            acc[7] += tokens
        hours[key][local.hour] += tokens
    session.execute(delete(DailyUsage).where(DailyUsage.zone == zone.key, DailyUsage.day == day))
    values = []
    for key, acc in sums.items():
        per_hour = hours[key]
        values.append(dict(zone=zone.key, day=key[0], model=key[1], mode=key[2], project=key[3], feature=key[4],
                           api_key=key[5], tags=key[6], input_tokens=acc[0], cached_input_tokens=acc[1],
                           output_tokens=acc[2], requests=acc[3], uptime_minutes=acc[4], cost_nanos=acc[5],
                           unpriced_tokens=acc[6], offhours_tokens=acc[7],
                           peak_hour_tokens=max(per_hour.values(), default=0),
                           active_hours=sum(1 for v in per_hour.values() if v > 0)))
    for i in range(0, len(values), 5000):
        session.execute(insert(DailyUsage), values[i:i + 5000])


def daily_rows(session: Session, since: datetime, until: datetime, zone: ZoneInfo,
               *, model: str | None = None) -> list[DailyRow]:
    """Usage per local day for the local days from `since` up to (not including) `until`'s day."""
    from sqlalchemy.orm import Session as _Session

    with _Session(session.get_bind()) as writer, writer.begin():
        refresh_daily(writer, zone)
    first, last = local_day(since, zone), local_day(until - timedelta(microseconds=1), zone)
    d = DailyUsage
    query = select(d.day, d.model, d.mode, d.project, d.feature, d.api_key, d.tags, d.input_tokens,
                   d.cached_input_tokens, d.output_tokens, d.requests, d.uptime_minutes, d.cost_nanos,
                   d.unpriced_tokens, d.offhours_tokens, d.peak_hour_tokens, d.active_hours
                   ).where(d.zone == zone.key, d.day >= first, d.day <= last)
    if model is not None:
        query = query.where(d.model == model)
    # Core, not ORM, execution: these are plain tuples and there can be hundreds of thousands.
    # The day and the six names repeat across rows: one object each, not one per row (memory).
    shared: dict[Any, Any] = {}
    share = shared.setdefault
    return [DailyRow(share(day, day), share(model, model), share(mode, mode), share(project, project),
                     share(feature, feature), share(api_key, api_key), share(tags, tags), *counts)
            for day, model, mode, project, feature, api_key, tags, *counts in session.connection().execute(query)]


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The UTC instant at which `day` starts in `zone`."""
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(timezone.utc)


def month_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """UTC instants of the start of `day`'s calendar month in `zone` and of the next month."""
    first = day.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return local_midnight(first, zone), local_midnight(following, zone)
