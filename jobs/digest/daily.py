"""The daily digest: yesterday against the days before, the models that moved, the dedicated
endpoints and GPU clusters that ran, this month per model per day and the forecast to
month-end, on top of the month's overview (`jobs.digest.overview`).

This module computes data only; the views in `bot/views/` turn it into Block Kit and a chart,
and the scheduler or the CLI pass the renderer in (jobs do not import `bot`). The digest is
queued in the outbox under a key per local day (`digest_key`), inside the scheduler's (job,
period) claim, so replicas and restarts post it once; one posted after its hour is marked late,
and one whose local day is already over is skipped (the next digest covers that day)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from db.models import from_nanos
from jobs.config.context import Context
from jobs.digest.overview import Overview, month_overview
from jobs.forecast.projection import Projection
from jobs.forecast.scope_index import ScopeIndex
from jobs.runtime.outbox import enqueue

log = logging.getLogger(__name__)
LATE_AFTER = timedelta(minutes=15)  # a digest queued later than this after its hour says "(late)"
MOVER_DAYS = 7

Rendered = tuple[str, list[dict[str, Any]], bytes | None]
DigestRenderer = Callable[["Digest"], Rendered]


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


def spend_on(index: ScopeIndex, day: date) -> Decimal:
    return from_nanos(sum(s.cost.get(day, 0) for s in index.series.values()))


def last_month(index: ScopeIndex) -> Decimal:
    first = (index.month_start - timedelta(days=1)).replace(day=1)
    return from_nanos(sum(v for s in index.series.values() for d, v in s.cost.items()
                          if first <= d < index.month_start))


def movers(index: ScopeIndex, last_day: date) -> list[Mover]:
    """Per model: the 7 days up to `last_day` against the 7 before, and who drove the change."""
    first = last_day - timedelta(days=MOVER_DAYS - 1)
    before = first - timedelta(days=MOVER_DAYS)
    this: dict[str, int] = defaultdict(int)
    last: dict[str, int] = defaultdict(int)
    by_driver: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for key, series in index.series.items():
        now_nanos = sum(v for d, v in series.cost.items() if first <= d <= last_day)
        then_nanos = sum(v for d, v in series.cost.items() if before <= d < first)
        if not now_nanos and not then_nanos:
            continue
        this[series.model] += now_nanos
        last[series.model] += then_nanos
        row = index.examples[key]
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


def endpoints(index: ScopeIndex, day: date) -> list[EndpointRun]:
    """Dedicated endpoints up (or billed) on `day`, with their spend in `day`'s month up to `day`
    (on the 1st, yesterday is last month's: its total is last month's too)."""
    first = day.replace(day=1)
    runs: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for key, series in index.series.items():
        if series.mode != "dedicated":
            continue
        row = index.examples[key]
        acc = runs[(_endpoint_name(row.tags) or row.model, row.model)]
        acc[0] += index.uptime.get((key, day), 0)
        acc[1] += series.cost.get(day, 0)
        acc[2] += series.tokens.get(day, 0)
        acc[3] += sum(v for d, v in series.cost.items() if first <= d <= day)
    ran = [EndpointRun(name, model, acc[0], from_nanos(acc[1]), acc[2], from_nanos(acc[3]))
           for (name, model), acc in runs.items() if acc[0] > 0 or acc[1] > 0]
    return sorted(ran, key=lambda e: (-e.cost, e.name))


def clusters(index: ScopeIndex, day: date) -> list[ClusterRun]:
    """GPU clusters up on `day`, with their spend in `day`'s month up to `day`."""
    first = day.replace(day=1)
    runs: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for key, series in index.series.items():
        if series.mode != "cluster":
            continue
        row = index.examples[key]
        tags = _tags(row.tags)
        acc = runs[(tags.get("cluster") or row.model, tags.get("gpu_type") or row.model)]
        acc[0] += index.uptime.get((key, day), 0)
        acc[1] += series.cost.get(day, 0)
        acc[2] += sum(v for d, v in series.cost.items() if first <= d <= day)
    ran = [ClusterRun(name, gpu_type, acc[0], from_nanos(acc[1]), from_nanos(acc[2]))
           for (name, gpu_type), acc in runs.items() if acc[0] > 0 or acc[1] > 0]
    return sorted(ran, key=lambda c: (-c.cost, c.name))


def daily_by_model(index: ScopeIndex) -> dict[str, dict[date, Decimal]]:
    """This month's spend per model per day (for the chart)."""
    daily: dict[str, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    for series in index.series.values():
        for day, nanos in series.cost.items():
            if day >= index.month_start and nanos:
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


def build_digest(context: Context, *, due_at: datetime | None = None, now: datetime | None = None) -> Digest:
    """The digest for the local day of `now`, due at `due_at`: every figure in it is as of `now`."""
    now = now or datetime.now(timezone.utc)
    due_at = due_at or now
    overview, index = month_overview(context, now)
    day = index.today
    yesterday = day - timedelta(days=1)
    return Digest(
        day=day,
        due_at=due_at,
        late=now - due_at > LATE_AFTER,
        overview=overview,
        yesterday_spend=spend_on(index, yesterday),
        day_before_spend=spend_on(index, yesterday - timedelta(days=1)),
        week_before_spend=spend_on(index, yesterday - timedelta(days=7)),
        movers=movers(index, yesterday),
        endpoints=endpoints(index, yesterday),
        daily=daily_by_model(index),
        forecast_days=_forecast_days(index.models()[0]),
        last_month_spend=last_month(index),
        clusters=clusters(index, yesterday),
    )


# ----------------------------------------------------------------------------- queueing


def digest_key(period: str) -> str:
    """The digest's outbox key: `period` is the local day, or a manual post's own id."""
    return f"digest:{period}"


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
    if queue_digest(context, digest, key=digest_key(day.isoformat()), render=render, now=now):
        log.info("digest for %s queued%s", day, " (late)" if digest.late else "",
                 extra={"job": "digest", "late": digest.late})
    else:
        log.info("digest for %s was already queued", day)
    return digest
