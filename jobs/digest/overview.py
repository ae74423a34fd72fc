"""The month at a glance, as the App Home shows it and the daily digest starts from it: the total
and each model's month-end outlook, the budgets with their forecasts, batch savings and the
prepaid runway, all from one read of the ledger into a `ScopeIndex` (the budget check reads
the same index, so a budget's forecast here is the alert's)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from db.models import UsageBucket
from db.rollups import DailyRow, daily_rows, local_day, local_midnight, month_bounds
from jobs.advice.batch import Savings
from jobs.budgets import specs as budget_store
from jobs.budgets.check import budget_figures
from jobs.budgets.specs import BudgetSpec
from jobs.config.context import Context
from jobs.forecast import runway as prepaid
from jobs.forecast.projection import HISTORY_DAYS, Projection
from jobs.forecast.scope_index import ScopeIndex

log = logging.getLogger(__name__)
STALE_AFTER = timedelta(hours=36)  # newest usage older than this: the digest warns the data may be stale
ADVICE_DAYS = 28  # batch advice's window of complete days (`jobs.advice.batch.advise`'s default)


@dataclass(frozen=True)
class Outlook:
    """Month-to-date and forecast month-end of one model (or of everything), in dollars."""

    key: str
    month_to_date: Decimal
    point: Decimal
    low: Decimal
    high: Decimal
    note: str = ""
    unpriced_tokens: int = 0


@dataclass(frozen=True)
class BudgetStatus:
    """A budget's spend so far this month and where its forecast lands."""

    name: str
    scope: str
    amount: Decimal
    spent: Decimal
    forecast: Outlook | None
    crossing: date | None = None  # the day forecast spend reaches the amount, if it does this month


@dataclass(frozen=True)
class BatchSaving:
    """A batch suggestion: serverless work that looks offline, and what batch would save a month."""

    model: str
    who: str
    monthly_saving: Decimal
    reason: str = ""
    monthly_tokens: int = 0


@dataclass(frozen=True)
class Overview:
    """This month at a glance: the App Home shows it, the digest starts from it."""

    as_of: datetime
    today: date
    zone: str
    total: Outlook
    models: list[Outlook]  # largest forecast first
    budgets: list[BudgetStatus]
    savings: list[BatchSaving]  # largest saving first
    total_saving: Decimal | None  # None: batch advice is not available
    last_usage_at: datetime | None  # the newest bucket in the ledger; None: the ledger is empty
    pull_cron: str  # when configured sources are pulled (`PULL_CRON`), for "how to get usage in"
    runway: prepaid.Runway | None = None  # None: no prepaid balance is stated

    @property
    def empty(self) -> bool:
        return self.last_usage_at is None

    @property
    def zone_info(self) -> ZoneInfo:
        return ZoneInfo(self.zone)

    @property
    def stale(self) -> bool:
        return self.last_usage_at is not None and self.as_of - self.last_usage_at > STALE_AFTER


def outlook(projection: Projection) -> Outlook:
    return Outlook(projection.key, projection.month_to_date, projection.point, projection.low, projection.high,
                   projection.note, projection.unpriced_tokens)


def budget_status(index: ScopeIndex, spec: BudgetSpec) -> BudgetStatus:
    """A budget's spend this month, its forecast and the day that forecast reaches the amount."""
    figures = budget_figures(index, spec)
    projection = figures.forecast
    if projection is None:
        return BudgetStatus(spec.name, spec.describe_scope(), spec.amount, figures.spent, None)
    return BudgetStatus(spec.name, spec.describe_scope(), spec.amount, figures.spent, outlook(projection),
                        projection.crossing(spec.amount))


def _savings(context: Context, rows: list[DailyRow], today: date, first_usage_at: datetime | None
             ) -> tuple[list[BatchSaving], Decimal | None]:
    """Batch advice from the rows already read: `advise()`'s window, signals and ranking, without
    reading the ledger a second time (the tests check the two agree). ([], None) if it failed:
    that is logged, and a digest without its savings is better than no digest."""
    try:
        first = local_day(first_usage_at, context.settings.zone) if first_usage_at is not None else today
        candidates, _ = Savings(rows, today=today, first_day=first, offline=context.settings.offline,
                                catalog=context.catalog, window_days=ADVICE_DAYS).candidates()
    except Exception:
        log.exception("batch advice failed; the digest goes out without it")
        return [], None
    found = [BatchSaving(c.model, c.who, c.monthly_saving, "; ".join(c.reasons), c.monthly_tokens)
             for c in candidates]
    return found, sum((c.monthly_saving for c in candidates), Decimal(0))


@dataclass(frozen=True)
class _Snapshot:
    """What one read of the database gives the digest and the App Home."""

    rows: list[DailyRow]
    budgets: list[BudgetSpec]
    first_usage_at: datetime | None
    last_usage_at: datetime | None
    prepaid_state: prepaid.PrepaidState | None = None
    prepaid_spent: tuple[Decimal, int] = (Decimal(0), 0)  # spend and unpriced tokens since it was stated


def _load(context: Context, now: datetime) -> _Snapshot:
    """Seed the file's budgets, then read them, the ledger's first and last bucket times and the daily rows."""
    settings, zone = context.settings, context.settings.zone
    today = now.astimezone(zone).date()
    _, month_end = month_bounds(today, zone)
    history_start = local_midnight(today.replace(day=1) - timedelta(days=HISTORY_DAYS), zone)
    with context.sessions() as session:
        budgets = budget_store.current_budgets(session, settings, context.catalog, now=now)
        # Two queries: SQLite answers a lone min() or max() from the index, but scans for both at once.
        first = session.scalar(select(func.min(UsageBucket.bucket_start)))
        last = session.scalar(select(func.max(UsageBucket.bucket_start)))
        rows = daily_rows(session, history_start, min(month_end, now + timedelta(hours=1)), zone)
        state = prepaid.prepaid_state(session, settings)
        spent = prepaid.spent_since(session, state.stated.at) if state is not None else (Decimal(0), 0)
    return _Snapshot(rows, budgets, first, last, state, spent)


def month_overview(context: Context, now: datetime) -> tuple[Overview, ScopeIndex]:
    """The overview as of `now`, and the index it was built from (the digest reads on from it)."""
    snapshot = _load(context, now)
    index = ScopeIndex(snapshot.rows, now.astimezone(context.settings.zone), context.catalog)
    total, per_model = index.models()
    models = sorted((outlook(p) for p in per_model.values()), key=lambda o: (-o.point, -o.month_to_date, o.key))
    budgets = [budget_status(index, spec) for spec in snapshot.budgets]
    savings, total_saving = _savings(context, snapshot.rows, index.today, snapshot.first_usage_at)
    runway = None
    if snapshot.prepaid_state is not None:
        spent, unpriced = snapshot.prepaid_spent
        runway = prepaid.project_runway(snapshot.prepaid_state, spent, index.total(), now=now,
                                        zone=context.settings.zone, unpriced_tokens=unpriced)
    overview = Overview(now, index.today, context.settings.zone.key, outlook(total), models, budgets, savings,
                        total_saving, snapshot.last_usage_at, context.settings.pull_cron, runway)
    return overview, index


def build_overview(context: Context, *, now: datetime | None = None) -> Overview:
    """This month's spend, forecasts, budgets and batch savings: what the App Home shows."""
    return month_overview(context, now or datetime.now(timezone.utc))[0]
