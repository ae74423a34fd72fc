"""The daily digest and the App Home's overview: what was spent, where the month is heading,
what to do about it.

This module computes data only; the views in `bot/views/` turn it into Block Kit and a chart,
and the scheduler or the CLI pass the renderer in (jobs do not import `bot`). The digest is
queued in the outbox under a key per local day, inside the scheduler's (job, period) claim,
so replicas and restarts post it once; one posted after its hour is marked late, and one whose
local day is already over is skipped (the next digest covers that day)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from db.models import UsageBucket, from_nanos
from db.rollups import DailyRow, daily_rows, local_day, local_midnight, month_bounds
from jobs.budgets import specs as budget_store
from jobs.forecast import runway as prepaid
from jobs.advice.batch import index_usage, rank, workloads
from jobs.budgets.specs import BudgetSpec
from jobs.config.context import Context
from jobs.runtime.outbox import enqueue
from jobs.forecast.projection import (
    HISTORY_DAYS,
    PriceMemo,
    Projection,
    Series,
    combine,
    fraction_of_day,
    index_rows,
    project_series,
)

log = logging.getLogger(__name__)
LATE_AFTER = timedelta(minutes=15)  # a digest queued later than this after its hour says "(late)"
STALE_AFTER = timedelta(hours=36)  # newest usage older than this: the digest warns the data may be stale
MOVER_DAYS = 7
ADVICE_DAYS = 28  # batch advice's window of complete days (`jobs.advice.batch.advise`'s default)

Rendered = tuple[str, list[dict[str, Any]], bytes | None]
DigestRenderer = Callable[["Digest"], Rendered]


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
class Mover:
    """A model whose spend over the last 7 days moved most against the 7 days before."""

    model: str
    this_week: Decimal
    last_week: Decimal
    driver: str | None = None  # the project (or feature) behind most of the change

    @property
    def change(self) -> Decimal:
        return self.this_week - self.last_week


@dataclass(frozen=True)
class BatchSaving:
    """A batch suggestion: serverless work that looks offline, and what batch would save a month."""

    model: str
    who: str
    monthly_saving: Decimal
    reason: str = ""
    monthly_tokens: int = 0


@dataclass(frozen=True)
class EndpointRun:
    """A dedicated endpoint that was up on the digest's day."""

    name: str
    model: str
    uptime_minutes: int
    cost: Decimal
    tokens: int
    month_cost: Decimal  # its spend in that day's month, up to and including that day


@dataclass(frozen=True)
class ClusterRun:
    """A GPU cluster that was up on the digest's day."""

    name: str
    gpu_type: str
    gpu_minutes: int
    cost: Decimal
    month_cost: Decimal  # its spend in that day's month, up to and including that day

    @property
    def unpriced(self) -> bool:
        """Up without a cost: its gpu_type has no GPU-hour rate (every rate is above zero)."""
        return self.gpu_minutes > 0 and self.cost == 0


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


@dataclass(frozen=True)
class ForecastDay:
    """One day still to come this month: expected spend and its share of the 80% interval."""

    day: date
    point: Decimal
    low: Decimal
    high: Decimal


@dataclass(frozen=True)
class Digest:
    """Everything the daily digest says, for the local day it is posted on."""

    day: date
    due_at: datetime
    late: bool
    overview: Overview
    yesterday_spend: Decimal
    day_before_spend: Decimal
    week_before_spend: Decimal  # the same weekday a week before yesterday
    movers: list[Mover]  # largest absolute change first
    endpoints: list[EndpointRun]
    daily: dict[str, dict[date, Decimal]] = field(default_factory=dict)  # this month, per model per day
    forecast_days: list[ForecastDay] = field(default_factory=list)
    last_month_spend: Decimal = Decimal(0)  # the calendar month before this one, in full
    clusters: list[ClusterRun] = field(default_factory=list)

    @property
    def yesterday(self) -> date:
        return self.day - timedelta(days=1)


# ----------------------------------------------------------------------------- building


def _dimensions(row: DailyRow) -> tuple[str, str, str, str, str]:
    return (row.model, row.mode, row.project, row.feature, row.tags)


def _outlook(projection: Projection) -> Outlook:
    return Outlook(projection.key, projection.month_to_date, projection.point, projection.low, projection.high,
                   projection.note, projection.unpriced_tokens)


class _Month:
    """The rows of this month and its history, indexed once by dimensions."""

    def __init__(self, context: Context, rows: list[DailyRow], today: date, day_fraction: float) -> None:
        self.context = context
        self.today = today
        self.month_start = today.replace(day=1)
        self.day_fraction = day_fraction
        self.series: dict[Hashable, Series] = index_rows(rows, today, key=_dimensions)
        self.examples: dict[Hashable, DailyRow] = {}
        self.uptime: dict[tuple[Hashable, date], int] = defaultdict(int)  # series hold tokens and cost only
        for row in rows:
            key = _dimensions(row)
            self.examples.setdefault(key, row)
            if row.uptime_minutes:
                self.uptime[(key, row.day)] += row.uptime_minutes
        self.month_nanos = {key: sum(v for d, v in series.cost.items() if d >= self.month_start)
                            for key, series in self.series.items()}
        self.prices = PriceMemo(context.catalog)
        self._projections: dict[frozenset[Hashable], Projection] = {}

    def _project(self, keys: frozenset[Hashable], name: str) -> Projection:
        projection = self._projections.get(keys)
        if projection is None:
            projection, _ = project_series({name: self._combined(keys)}, today=self.today,
                                           day_fraction=self.day_fraction, catalog=self.context.catalog,
                                           prices=self.prices)
            self._projections[keys] = projection
        return projection

    def _combined(self, keys: frozenset[Hashable]) -> list[Series]:
        """The keys' series summed per model and mode, as `combine` does; a lone series is used as it
        is (projections only read them), which spares copying most of a project's series."""
        groups: dict[tuple[str, str], list[Series]] = defaultdict(list)
        for key in keys:
            series = self.series[key]
            groups[(series.model, series.mode)].append(series)
        return [parts[0] if len(parts) == 1 else combine(parts)[0] for parts in groups.values()]

    def project_models(self) -> tuple[Projection, list[Outlook]]:
        """The total and each model's outlook; the total's interval comes from the summed series."""
        by_model: dict[str, list[Hashable]] = defaultdict(list)
        for key, series in self.series.items():
            by_model[series.model].append(key)
        groups = {model: combine(self.series[k] for k in keys) for model, keys in by_model.items()}
        total, per_model = project_series(groups, today=self.today, day_fraction=self.day_fraction,
                                          catalog=self.context.catalog, prices=self.prices)
        self._projections[frozenset(self.series)] = total
        for model, projection in per_model.items():
            self._projections[frozenset(by_model[model])] = projection
        models = sorted((_outlook(p) for p in per_model.values()), key=lambda o: (-o.point, -o.month_to_date, o.key))
        return total, models

    def budget(self, spec: BudgetSpec) -> BudgetStatus:
        """A budget's spend this month, its forecast and the day that forecast reaches the amount."""
        keys = frozenset(k for k in self.series if spec.matches(self.examples[k]))
        spent = from_nanos(sum(self.month_nanos[k] for k in keys))
        if not keys:
            return BudgetStatus(spec.name, spec.describe_scope(), spec.amount, spent, None)
        projection = self._project(keys, spec.name)
        return BudgetStatus(spec.name, spec.describe_scope(), spec.amount, spent, _outlook(projection),
                            projection.crossing(spec.amount))

    def spend_on(self, day: date) -> Decimal:
        return from_nanos(sum(s.cost.get(day, 0) for s in self.series.values()))

    def last_month(self) -> Decimal:
        first = (self.month_start - timedelta(days=1)).replace(day=1)
        return from_nanos(sum(v for s in self.series.values() for d, v in s.cost.items()
                              if first <= d < self.month_start))

    def movers(self, last_day: date) -> list[Mover]:
        """Per model: the 7 days up to `last_day` against the 7 before, and who drove the change."""
        first = last_day - timedelta(days=MOVER_DAYS - 1)
        before = first - timedelta(days=MOVER_DAYS)
        this: dict[str, int] = defaultdict(int)
        last: dict[str, int] = defaultdict(int)
        by_driver: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for key, series in self.series.items():
            now_nanos = sum(v for d, v in series.cost.items() if first <= d <= last_day)
            then_nanos = sum(v for d, v in series.cost.items() if before <= d < first)
            if not now_nanos and not then_nanos:
                continue
            this[series.model] += now_nanos
            last[series.model] += then_nanos
            row = self.examples[key]
            driver = f"project={row.project}" if row.project else (f"feature={row.feature}" if row.feature else "")
            if driver:
                by_driver[series.model][driver] += now_nanos - then_nanos
        movers = []
        for model in this.keys() | last.keys():
            change = this[model] - last[model]
            if change == 0:
                continue
            same_way = [(d, c) for d, c in by_driver[model].items() if c != 0 and (c > 0) == (change > 0)]
            # Name a driver only when there is a choice of several.
            driver = max(same_way, key=lambda item: (abs(item[1]), item[0]))[0] \
                if len(by_driver[model]) > 1 and same_way else None
            movers.append(Mover(model, from_nanos(this[model]), from_nanos(last[model]), driver))
        return sorted(movers, key=lambda m: (-abs(m.change), m.model))

    def endpoints(self, day: date) -> list[EndpointRun]:
        """Dedicated endpoints up (or billed) on `day`, with their spend in `day`'s month up to `day`
        (on the 1st, yesterday is last month's: its total is last month's too)."""
        first = day.replace(day=1)
        runs: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for key, series in self.series.items():
            if series.mode != "dedicated":
                continue
            row = self.examples[key]
            acc = runs[(_endpoint_name(row.tags) or row.model, row.model)]
            acc[0] += self.uptime.get((key, day), 0)
            acc[1] += series.cost.get(day, 0)
            acc[2] += series.tokens.get(day, 0)
            acc[3] += sum(v for d, v in series.cost.items() if first <= d <= day)
        ran = [EndpointRun(name, model, acc[0], from_nanos(acc[1]), acc[2], from_nanos(acc[3]))
               for (name, model), acc in runs.items() if acc[0] > 0 or acc[1] > 0]
        return sorted(ran, key=lambda e: (-e.cost, e.name))

    def clusters(self, day: date) -> list[ClusterRun]:
        """GPU clusters up on `day`, with their spend in `day`'s month up to `day`."""
        first = day.replace(day=1)
        runs: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
        for key, series in self.series.items():
            if series.mode != "cluster":
                continue
            row = self.examples[key]
            tags = _tags(row.tags)
            acc = runs[(tags.get("cluster") or row.model, tags.get("gpu_type") or row.model)]
            acc[0] += self.uptime.get((key, day), 0)
            acc[1] += series.cost.get(day, 0)
            acc[2] += sum(v for d, v in series.cost.items() if first <= d <= day)
        ran = [ClusterRun(name, gpu_type, acc[0], from_nanos(acc[1]), from_nanos(acc[2]))
               for (name, gpu_type), acc in runs.items() if acc[0] > 0 or acc[1] > 0]
        return sorted(ran, key=lambda c: (-c.cost, c.name))

    def daily_by_model(self) -> dict[str, dict[date, Decimal]]:
        """This month's spend per model per day (for the chart)."""
        daily: dict[str, dict[date, int]] = defaultdict(lambda: defaultdict(int))
        for series in self.series.values():
            for day, nanos in series.cost.items():
                if day >= self.month_start and nanos:
                    daily[series.model][day] += nanos
        return {model: {d: from_nanos(v) for d, v in sorted(days.items())} for model, days in sorted(daily.items())}


def _endpoint_name(tags: str) -> str | None:
    return _tags(tags).get("endpoint")


def _tags(tags: str) -> dict[str, str]:
    """The ledger's "k=v,k2=v2" tags as a dict (empty values left out)."""
    pairs = (tag.partition("=") for tag in tags.split(",")) if tags else ()
    return {key: value for key, _, value in pairs if key and value}


def _forecast_days(total: Projection) -> list[ForecastDay]:
    """Each remaining day's expected spend, with the month's interval spread in proportion."""
    rest = total.point - total.month_to_date
    if rest <= 0:
        return []
    low_share = (total.low - total.month_to_date) / rest
    high_share = (total.high - total.month_to_date) / rest
    return [ForecastDay(day, amount, amount * low_share, amount * high_share) for day, amount in total.remaining]


def _savings(context: Context, rows: list[DailyRow], today: date, first_usage_at: datetime | None
             ) -> tuple[list[BatchSaving], Decimal | None]:
    """Batch advice from the rows already read: `advise()`'s window, signals and ranking, without
    reading the ledger a second time (the tests check the two agree). ([], None) if it failed:
    that is logged, and a digest without its savings is better than no digest."""
    try:
        start = today - timedelta(days=ADVICE_DAYS)
        first = local_day(first_usage_at, context.settings.zone) if first_usage_at is not None else today
        index, _ = index_usage([row for row in rows if start <= row.day < today])
        candidates, _ = rank(workloads(index), offline=context.settings.offline, catalog=context.catalog,
                             today=today, days=max(1, (today - max(first, start)).days))
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


def _overview(context: Context, now: datetime) -> tuple[Overview, _Month, Projection]:
    snapshot = _load(context, now)
    local_now = now.astimezone(context.settings.zone)
    month = _Month(context, snapshot.rows, local_now.date(), fraction_of_day(local_now))
    total, models = month.project_models()
    budgets = [month.budget(spec) for spec in snapshot.budgets]
    savings, total_saving = _savings(context, snapshot.rows, month.today, snapshot.first_usage_at)
    runway = None
    if snapshot.prepaid_state is not None:
        spent, unpriced = snapshot.prepaid_spent
        runway = prepaid.project_runway(snapshot.prepaid_state, spent, total if month.series else None, now=now,
                                        zone=context.settings.zone, unpriced_tokens=unpriced)
    overview = Overview(now, month.today, context.settings.zone.key, _outlook(total), models, budgets, savings,
                        total_saving, snapshot.last_usage_at, context.settings.pull_cron, runway)
    return overview, month, total


def build_overview(context: Context, *, now: datetime | None = None) -> Overview:
    """This month's spend, forecasts, budgets and batch savings: what the App Home shows."""
    return _overview(context, now or datetime.now(timezone.utc))[0]


def build_digest(context: Context, *, due_at: datetime | None = None, now: datetime | None = None) -> Digest:
    """The digest for the local day of `now`, due at `due_at`: every figure in it is as of `now`."""
    now = now or datetime.now(timezone.utc)
    due_at = due_at or now
    overview, month, total = _overview(context, now)
    day = month.today
    yesterday = day - timedelta(days=1)
    return Digest(
        day=day,
        due_at=due_at,
        late=now - due_at > LATE_AFTER,
        overview=overview,
        yesterday_spend=month.spend_on(yesterday),
        day_before_spend=month.spend_on(yesterday - timedelta(days=1)),
        week_before_spend=month.spend_on(yesterday - timedelta(days=7)),
        movers=month.movers(yesterday),
        endpoints=month.endpoints(yesterday),
        daily=month.daily_by_model(),
        forecast_days=_forecast_days(total),
        last_month_spend=month.last_month(),
        clusters=month.clusters(yesterday),
    )


# ----------------------------------------------------------------------------- queueing


def queue_digest(context: Context, digest: Digest, *, key: str, render: DigestRenderer | None,
                 channel: str | None = None, now: datetime | None = None) -> bool:
    """Render the digest and put it in the outbox (with its chart); False if `key` was queued before."""
    now = now or datetime.now(timezone.utc)
    channel = channel or context.settings.digest_channel
    if not channel:
        raise ValueError("DIGEST_CHANNEL is not set")
    if render is not None:
        text, blocks, chart = render(digest)
    else:
        text, blocks, chart = _plain_text(digest), [], None
    with context.sessions() as session, session.begin():
        return enqueue(session, key=key, kind="digest", channel=channel, text=text, blocks=blocks or None,
                       attachment=chart, attachment_name=f"spend-{digest.day.isoformat()}.png" if chart else None,
                       attachment_alt=_chart_alt(digest) if chart else None, late=digest.late, now=now)


def _chart_alt(digest: Digest) -> str:
    """The chart in words, for screen readers."""
    total = digest.overview.total
    return (f"Daily spend per model this month to {digest.day:%b} {digest.day.day}, stacked, with the forecast "
            f"to month-end: {total.month_to_date:,.2f} USD so far, {total.point:,.2f} USD forecast "
            f"(80% range {total.low:,.2f} to {total.high:,.2f}).")


def _plain_text(digest: Digest) -> str:
    total = digest.overview.total
    late = " (late)" if digest.late else ""
    return (f"Spend digest for {digest.day.isoformat()}{late}: yesterday {digest.yesterday_spend:.2f} USD, "
            f"month to date {total.month_to_date:.2f} USD, forecast {total.point:.2f} USD")


def digest_job(context: Context, fire_time: datetime, *, render: DigestRenderer | None = None,
               now: datetime | None = None) -> Digest | None:
    """The scheduled digest for the local day of `fire_time` (run under the scheduler's claim).

    A missed digest is posted late only while its local day lasts: after midnight it is skipped,
    since that day's figures are gone and the next digest (due today) reports it as yesterday."""
    now = now or datetime.now(timezone.utc)
    if not context.settings.digest_channel:
        log.warning("DIGEST_CHANNEL is not set; no digest")
        return None
    zone = context.settings.zone
    day = fire_time.astimezone(zone).date()
    if day != now.astimezone(zone).date():
        log.warning("digest for %s skipped: it was missed and its day is over; today's digest reports it",
                    day, extra={"job": "digest", "skipped": day.isoformat()})
        return None
    digest = build_digest(context, due_at=fire_time, now=now)
    if queue_digest(context, digest, key=f"digest:{day.isoformat()}", render=render, now=now):
        log.info("digest for %s queued%s", day, " (late)" if digest.late else "",
                 extra={"job": "digest", "late": digest.late})
    else:
        log.info("digest for %s was already queued", day)
    return digest
