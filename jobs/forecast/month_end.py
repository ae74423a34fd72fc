"""Where this month will land per model, project or feature, from the ledger (`budget-guard forecast`).

The daily rollups are summed in SQL per (day, model, mode, group) before they are projected:
the projection needs nothing finer, and on a ledger of 200 models x 10 projects that reads a
tenth of the rows. `jobs.forecast.projection` then forecasts tokens and prices each remaining day."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, cast, func, select
from sqlalchemy.orm import Session

from db.rollups import DailyRow, DailyUsage, refresh_daily
from jobs.config.settings import Settings
from jobs.forecast.projection import HISTORY_DAYS, Projection, fraction_of_day, project
from pricing.catalog import Catalog

GROUPS = ("model", "project", "feature")
NONE = "(none)"  # the group of usage that names no project or feature


@dataclass(frozen=True)
class LedgerForecast:
    """The month's total and per-group projections, as of a moment."""

    as_of: datetime
    today: date
    zone: str
    by: str
    total: Projection
    groups: list[Projection]  # largest forecast first


def forecast_month_end(session: Session, settings: Settings, catalog: Catalog, *, by: str = "model",
                       now: datetime | None = None) -> LedgerForecast | None:
    """Month-to-date, month-end forecast and 80% interval per group; None when the ledger has no
    usage this month or in the history before it."""
    if by not in GROUPS:
        raise ValueError(f"by must be one of {', '.join(GROUPS)}")
    now = now or datetime.now(timezone.utc)
    zone = settings.zone
    local_now = now.astimezone(zone)
    today = local_now.date()
    rows = grouped_rows(session, zone, today.replace(day=1) - timedelta(days=HISTORY_DAYS), today, by)
    if not rows:
        return None
    group_of: Callable[[DailyRow], str] = lambda row: getattr(row, by) or NONE  # noqa: E731
    total, groups = project(rows, today=today, day_fraction=fraction_of_day(local_now), catalog=catalog,
                            group_of=group_of)
    ordered = sorted(groups.values(), key=lambda p: (-p.point, -p.month_to_date, p.key))
    return LedgerForecast(now, today, zone.key, by, total, ordered)


def grouped_rows(session: Session, zone: ZoneInfo, first: date, last: date, by: str) -> list[DailyRow]:
    """Daily usage from `first` to `last` (local days) summed per day, model, mode and `by`;
    the dimensions not grouped on are blank."""
    with Session(session.get_bind()) as writer, writer.begin():
        refresh_daily(writer, zone)
    d = DailyUsage
    keys = [d.day, d.model, d.mode] + ([getattr(d, by)] if by != "model" else [])
    counts = (d.input_tokens, d.cached_input_tokens, d.output_tokens, d.requests, d.uptime_minutes, d.cost_nanos,
              d.unpriced_tokens)
    sums = [cast(func.sum(c), BigInteger) for c in counts]  # PostgreSQL would sum bigints as numeric
    query = select(*keys, *sums).where(d.zone == zone.key, d.day >= first, d.day <= last).group_by(*keys)
    rows = []
    for values in session.execute(query):
        dims = {"project": "", "feature": ""}
        if by in dims:
            dims[by] = values[3]
        rows.append(DailyRow(values[0], values[1], values[2], dims["project"], dims["feature"], "", "",
                             *values[len(keys):]))
    return rows
