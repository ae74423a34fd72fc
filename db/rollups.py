"""Read-side rollups of the ledger: spend and tokens per local day, and per local hour of day.

Budgets, forecasts, the digest and batch advice all read these instead of raw buckets, so a
ledger of millions of hourly rows is scanned once per run, grouped in the database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, case, cast, func, literal, literal_column, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from db.models import UsageBucket


@dataclass(frozen=True)
class DailyRow:
    """One local day of one model, mode, project, feature and tag set."""

    day: date
    model: str
    mode: str
    project: str
    feature: str
    tags: str
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    requests: int
    uptime_minutes: int
    cost_nanos: int
    unpriced_tokens: int

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class HourRow:
    """Usage of one model and set of dimensions in one local hour of one day."""

    day: date
    hour: int
    model: str
    project: str
    feature: str
    api_key: str
    input_tokens: int
    output_tokens: int
    requests: int
    cost_nanos: int


def _offset_segments(zone: ZoneInfo, start: datetime, end: datetime) -> list[tuple[datetime, int]]:
    """(from UTC instant, UTC offset in minutes) for each stretch of constant offset in [start, end)."""
    segments: list[tuple[datetime, int]] = []
    cursor = start.replace(minute=0, second=0, microsecond=0)
    step = timedelta(hours=1)
    current = None
    while cursor < end + step:
        offset = int(cursor.astimezone(zone).utcoffset().total_seconds() // 60)  # type: ignore[union-attr]
        if offset != current:
            segments.append((cursor, offset))
            current = offset
        cursor += step
    return segments


def local_time_expr(dialect: str, zone: ZoneInfo, start: datetime, end: datetime) -> ColumnElement:
    """bucket_start shifted to local wall time, exact across daylight-saving changes in the window."""
    column = UsageBucket.bucket_start
    segments = _offset_segments(zone, start, end)

    def shifted(minutes: int) -> ColumnElement:
        if dialect == "postgresql":
            return column + literal(timedelta(minutes=minutes))
        return func.datetime(column, f"{minutes:+d} minutes")

    if len(segments) == 1:
        return shifted(segments[0][1])
    whens = [(column < boundary, shifted(offset))
             for (_, offset), (boundary, _) in zip(segments, segments[1:])]
    return case(*whens, else_=shifted(segments[-1][1]))


def _day_and_hour(dialect: str, local: ColumnElement) -> tuple[ColumnElement, ColumnElement]:
    if dialect == "postgresql":
        return func.to_char(local, "YYYY-MM-DD"), cast(func.extract("hour", local), Integer)
    return func.strftime("%Y-%m-%d", local), cast(func.strftime("%H", local), Integer)


def daily_rows(session: Session, since: datetime, until: datetime, zone: ZoneInfo,
               *, model: str | None = None) -> list[DailyRow]:
    """Usage per local day between `since` and `until` (UTC instants), grouped by budget dimensions."""
    dialect = session.get_bind().dialect.name
    local = local_time_expr(dialect, zone, since, until)
    day, _ = _day_and_hour(dialect, local)
    b = UsageBucket
    unpriced = case((b.cost_nanos.is_(None), b.input_tokens + b.output_tokens), else_=0)
    query = (
        select(day.label("local_day"), b.model, b.mode, b.project, b.feature, b.tags,
               func.sum(b.input_tokens), func.sum(b.cached_input_tokens), func.sum(b.output_tokens),
               func.sum(b.requests), func.sum(b.uptime_minutes), func.coalesce(func.sum(b.cost_nanos), 0),
               func.sum(unpriced))
        .where(b.bucket_start >= since, b.bucket_start < until)
        .group_by(literal_column("local_day"), b.model, b.mode, b.project, b.feature, b.tags)
    )
    if model is not None:
        query = query.where(b.model == model)
    return [
        DailyRow(date.fromisoformat(str(r[0])), r[1], r[2], r[3], r[4], r[5], int(r[6] or 0), int(r[7] or 0),
                 int(r[8] or 0), int(r[9] or 0), int(r[10] or 0), int(r[11] or 0), int(r[12] or 0))
        for r in session.execute(query)
    ]


def hourly_rows(session: Session, since: datetime, until: datetime, zone: ZoneInfo,
                *, mode: str = "serverless") -> list[HourRow]:
    """Usage per local day and hour for one mode, with the dimensions that say who runs it."""
    dialect = session.get_bind().dialect.name
    local = local_time_expr(dialect, zone, since, until)
    day, hour = _day_and_hour(dialect, local)
    b = UsageBucket
    query = (
        select(day.label("local_day"), hour.label("local_hour"), b.model, b.project, b.feature, b.api_key, func.sum(b.input_tokens),
               func.sum(b.output_tokens), func.sum(b.requests), func.coalesce(func.sum(b.cost_nanos), 0))
        .where(b.bucket_start >= since, b.bucket_start < until, b.mode == mode, b.width == "1h")
        .group_by(literal_column("local_day"), literal_column("local_hour"), b.model, b.project, b.feature, b.api_key)
    )
    return [
        HourRow(date.fromisoformat(str(r[0])), int(r[1]), r[2], r[3], r[4], r[5], int(r[6] or 0), int(r[7] or 0),
                int(r[8] or 0), int(r[9] or 0))
        for r in session.execute(query)
    ]


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The UTC instant at which `day` starts in `zone`."""
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(timezone.utc)


def month_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """UTC instants of the start of `day`'s calendar month in `zone` and of the next month."""
    first = day.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return local_midnight(first, zone), local_midnight(following, zone)


