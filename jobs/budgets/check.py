"""The budget check: thresholds crossed, forecasts over budget, spikes, blind sources, price
changes, a prepaid runway running short and idle dedicated endpoints become alerts, each
recorded once per (budget, period, kind, threshold) and queued in the outbox in the same
transaction, so replicas and restarts cannot post one twice. It also keeps each budget's
figures for `/v1/budgets/status`, and stops the endpoints in scope of a budget with
`on_exceed = "stop-endpoints"` once it is spent (`jobs.budgets.guard`: once per endpoint and month)."""

from __future__ import annotations

import logging
import statistics
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db.models import Alert, OutboxMessage, SourceState, SyncedPrice, from_nanos
from db.rollups import DailyRow, daily_rows, local_midnight, month_bounds
from jobs.budgets import status as budget_status
from jobs.runtime import claims
from jobs.budgets import guard
from jobs.forecast import runway
from jobs.budgets import specs as budget_store
from jobs.budgets.specs import BudgetSpec
from jobs.config.context import Context
from jobs.usage.endpoints import EndpointInfo, endpoint_sources, idle_endpoints, running_endpoints
from jobs.runtime.outbox import enqueue
from jobs.forecast.projection import HISTORY_DAYS, Projection, PriceMemo, combine, fraction_of_day, index_rows, project_series
from jobs.config.redaction import redact
from pricing.money import percent, usd

log = logging.getLogger(__name__)
SPIKE_MINIMUM = Decimal("1.00")  # a "spike" smaller than this many dollars is noise


@dataclass(frozen=True)
class Driver:
    """A model and dimensions, and the dollars they account for."""

    label: str
    amount: Decimal


@dataclass(frozen=True)
class AlertDraft:
    """An alert before it is recorded: what happened, by how much, what drove it, what to do."""

    budget: str
    period: str
    kind: str  # threshold, forecast, spike, source, price, runway, idle, stop
    threshold: str
    channel: str
    headline: str
    details: list[str]
    advice: str
    drivers: list[Driver] = field(default_factory=list)
    mention: str | None = None
    amount: Decimal | None = None
    spend: Decimal | None = None
    forecast: Projection | None = None
    covers: tuple[str, ...] = ()  # lower thresholds crossed at the same time: recorded, not posted
    endpoint: str | None = None  # an idle alert's endpoint id (its Stop button)

    @property
    def key(self) -> str:
        return f"alert:{self.budget}:{self.period}:{self.kind}:{self.threshold}"


Message = tuple[str, list[dict[str, Any]]]
AlertRenderer = Callable[[AlertDraft, int], Message]


def check_budgets(context: Context, *, now: datetime | None = None, render: AlertRenderer | None = None,
                  dry_run: bool = False) -> list[AlertDraft]:
    """Find what needs saying now; record and queue each new alert (unless `dry_run`)."""
    now = now or datetime.now(timezone.utc)
    settings, zone = context.settings, context.settings.zone
    local_now = now.astimezone(zone)
    today = local_now.date()
    month_start, month_end = month_bounds(today, zone)
    history_start = local_midnight(today.replace(day=1) - timedelta(days=HISTORY_DAYS), zone)

    with context.sessions() as session:
        budgets = budget_store.current_budgets(session, settings, context.catalog, save_sync=not dry_run, now=now)
        rows = daily_rows(session, history_start, min(month_end, now + timedelta(hours=1)), zone)
        recorded = {(a.budget, a.period, a.kind, a.threshold) for a in
                    session.scalars(select(Alert).where(Alert.created_at >= month_start - timedelta(days=40)))}
        snoozed = _snoozed(session, now)
        ledger = _Ledger(rows, today, context.catalog)
        endpoints = running_endpoints(session, endpoint_sources(settings))
        figures = [ledger.figures(budget, local_now) for budget in budgets]
        drafts: list[AlertDraft] = []
        for budget in budgets:
            if budget.name in snoozed:
                continue
            channel = budget.channel or settings.alert_channel
            if not channel:
                log.warning("budget %s has no channel and ALERT_CHANNEL is not set; not alerting", budget.name)
                continue
            drafts.extend(_budget_alerts(budget, ledger, channel, now, context, endpoints))
        drafts.extend(_source_alerts(session, context, now))
        drafts.extend(_price_alerts(session, context, rows, today))
        drafts.extend(_runway_alerts(session, context, ledger, now))
        drafts.extend(_idle_alerts(session, context, now))

    fresh = [d for d in drafts if (d.budget, d.period, d.kind, d.threshold) not in recorded and d.budget not in snoozed]
    if dry_run:
        return fresh
    with context.sessions() as session, session.begin():
        budget_status.store(session, figures, period=_month_key(today), now=now)
    posted = []
    for draft in fresh:
        if record_alert(context, draft, now, render):
            posted.append(draft)
    _stop_exceeded(context, figures, endpoints, _month_key(today), now, render)
    return posted


def _snoozed(session: Session, now: datetime) -> set[str]:
    return set(session.scalars(select(Alert.budget).where(Alert.snoozed_until.is_not(None), Alert.snoozed_until > now)))


def _month_key(day: date) -> str:
    return day.strftime("%Y-%m")


class _Ledger:
    """The check's rows indexed once by dimensions, so fifty budgets do not rescan them."""

    def __init__(self, rows: list[DailyRow], today: date, catalog: Any) -> None:
        self.series = index_rows(rows, today, key=_dimensions)
        self.examples: dict[Any, DailyRow] = {}
        for row in rows:
            self.examples.setdefault(_dimensions(row), row)
        self.prices = PriceMemo(catalog)
        self._projections: dict[str, Projection | None] = {}

    def keys_in(self, budget: BudgetSpec) -> list[Any]:
        return [key for key in self.series if budget.matches(self.examples[key])]

    def spend_by_label(self, keys: list[Any], days: Callable[[date], bool]) -> dict[str, int]:
        """Nano-dollars per driver label over the days `days` accepts."""
        spend: dict[str, int] = defaultdict(int)
        for key in keys:
            total = sum(v for d, v in self.series[key].cost.items() if days(d))
            if total:
                spend[_label(self.examples[key])] += total
        return spend

    def projection(self, budget: BudgetSpec, local_now: datetime) -> Projection | None:
        """The budget's month-end projection (computed once per check); None without usage in scope."""
        if budget.name not in self._projections:
            keys = self.keys_in(budget)
            self._projections[budget.name] = project_series(
                {budget.name: combine(self.series[k] for k in keys)}, today=local_now.date(),
                day_fraction=fraction_of_day(local_now), catalog=self.prices.catalog, prices=self.prices,
            )[0] if keys else None
        return self._projections[budget.name]

    def figures(self, budget: BudgetSpec, local_now: datetime) -> budget_status.Figures:
        month_start = local_now.date().replace(day=1)
        spend = from_nanos(sum(v for d, v in self.daily(self.keys_in(budget)).items() if d >= month_start))
        return budget_status.Figures(budget, spend, self.projection(budget, local_now))

    def total(self, local_now: datetime) -> Projection | None:
        """All spend's month-end projection (for the prepaid runway)."""
        if not self.series:
            return None
        return project_series({"total": combine(self.series.values())}, today=local_now.date(),
                              day_fraction=fraction_of_day(local_now), catalog=self.prices.catalog,
                              prices=self.prices)[0]

    def daily(self, keys: list[Any]) -> dict[date, int]:
        totals: dict[date, int] = defaultdict(int)
        for key in keys:
            for day, nanos in self.series[key].cost.items():
                totals[day] += nanos
        return totals


def _dimensions(row: DailyRow) -> tuple[str, str, str, str, str]:
    return (row.model, row.mode, row.project, row.feature, row.tags)


def _label(row: DailyRow) -> str:
    parts = [row.model]
    if row.mode != "serverless":
        parts.append(row.mode)
    if row.project:
        parts.append(f"project={row.project}")
    if row.feature:
        parts.append(f"feature={row.feature}")
    return " · ".join(parts)


def _top(spend: dict[str, int], n: int = 3) -> list[Driver]:
    ordered = sorted(spend.items(), key=lambda item: -item[1])[:n]
    return [Driver(label, from_nanos(nanos)) for label, nanos in ordered if nanos > 0]


def _budget_alerts(budget: BudgetSpec, ledger: _Ledger, channel: str, now: datetime,
                   context: Context, endpoints: list[EndpointInfo]) -> list[AlertDraft]:
    local_now = now.astimezone(context.settings.zone)
    today = local_now.date()
    period = _month_key(today)
    month_start = today.replace(day=1)
    keys = ledger.keys_in(budget)
    daily = ledger.daily(keys)
    spend = from_nanos(sum(v for d, v in daily.items() if d >= month_start))
    drivers = _top(ledger.spend_by_label(keys, lambda d: d >= month_start))
    saving = _batch_saving(context, budget, now)
    advice = (f"Moving the offline work in this scope to batch would save about {usd(saving)}/month "
              "(`budget-guard advise`)." if saving else "Check the drivers below; `/costquote compare` finds cheaper models.")
    drafts: list[AlertDraft] = []

    thresholds = sorted(set(budget.thresholds) | ({100} if budget.stops_endpoints else set()))
    crossed = [t for t in thresholds if spend * 100 >= budget.amount * t]
    if crossed:
        top = max(crossed)
        headline = f"Budget {budget.name}: {percent(spend / budget.amount)} used ({usd(spend)} of {usd(budget.amount)})"
        details = [f"Crossed {top}% of the {today:%B} budget for {budget.describe_scope()}."]
        if spend > budget.amount:
            details.append(f"Over by {usd(spend - budget.amount)}.")
        if budget.stops_endpoints and spend >= budget.amount:
            details.append(_stop_notice([e for e in endpoints if budget.matches(e.as_row())]))
        lower = tuple(str(t) for t in crossed if t != top)
        drafts.append(AlertDraft(budget.name, period, "threshold", str(top), channel, headline, details,
                                 advice, drivers, budget.mention, budget.amount, spend, covers=lower))

    projection = ledger.projection(budget, local_now) if budget.forecast and spend < budget.amount else None
    if projection is not None:
        if projection.point > budget.amount:
            crossing = projection.crossing(budget.amount)
            when = f" around {crossing:%b} {crossing.day}" if crossing else ""
            likely = "will" if projection.low > budget.amount else "is likely to"
            headline = (f"Budget {budget.name} {likely} be exceeded{when}: forecast {usd(projection.point)} "
                        f"of {usd(budget.amount)}")
            details = [
                f"Month-end forecast {usd(projection.point)} (80% interval {usd(projection.low)}–{usd(projection.high)}),"
                f" {percent(projection.point / budget.amount)} of the budget; spent so far {usd(spend)}.",
            ]
            if projection.note:
                details.append(f"Forecast: {projection.note}.")
            drafts.append(AlertDraft(budget.name, period, "forecast", "", channel, headline, details, advice,
                                     drivers, budget.mention, budget.amount, spend, projection))

    spike = _spike(daily, today, context.settings.spike_factor)
    if spike is not None:
        day, actual, expected = spike
        week = today - timedelta(days=8)
        before = ledger.spend_by_label(keys, lambda d: week <= d < day)
        on_day = ledger.spend_by_label(keys, lambda d: d == day)
        increases = {label: nanos - before.get(label, 0) // 7 for label, nanos in on_day.items()}
        headline = f"Spend spike in {budget.name} on {day:%b} {day.day}: {usd(actual)} against {usd(expected)} expected"
        details = [f"{usd(actual)} in one day, {(actual / expected).quantize(Decimal('0.1'))}× the expected "
                   f"{usd(expected)} for {budget.describe_scope()}."]
        drafts.append(AlertDraft(budget.name, day.isoformat(), "spike", "", channel, headline, details,
                                 "If this was not planned, find the caller among the drivers below.",
                                 _top(increases), budget.mention, budget.amount, spend))
    return drafts


def _spike(daily_nanos: dict[date, int], today: date, factor: Decimal) -> tuple[date, Decimal, Decimal] | None:
    """Yesterday against a robust expectation: the larger of the same weekday's median over four
    weeks and the mean of the seven days before."""
    day = today - timedelta(days=1)
    actual = from_nanos(daily_nanos.get(day, 0))
    same_weekday = [from_nanos(daily_nanos.get(day - timedelta(weeks=w), 0)) for w in range(1, 5)]
    week = [from_nanos(daily_nanos.get(day - timedelta(days=d), 0)) for d in range(1, 8)]
    if not any(week):
        return None
    expected = max(statistics.median(same_weekday), sum(week) / 7)
    if expected <= 0 or actual < expected * factor or actual - expected < SPIKE_MINIMUM:
        return None
    return day, actual, expected


def _batch_saving(context: Context, budget: BudgetSpec, now: datetime) -> Decimal | None:
    from jobs.advice.batch import saving_in_scope

    return saving_in_scope(context, budget.scope, now=now)


def _stop_notice(in_scope: list[EndpointInfo]) -> str:
    rule = "This budget stops the dedicated endpoints in its scope when it is spent"
    if not in_scope:
        return f"{rule}; none of them is running."
    names = ", ".join(e.name for e in in_scope[:10]) + (f" and {len(in_scope) - 10} more" if len(in_scope) > 10 else "")
    return f"{rule}: stopping {names} now; what together.ai answers follows in this thread."


def _stop_exceeded(context: Context, figures: list[budget_status.Figures], endpoints: list[EndpointInfo],
                   period: str, now: datetime, render: AlertRenderer | None) -> None:
    """Stop the running endpoints in scope of each spent `stop-endpoints` budget whose 100% alert is
    recorded (a snoozed budget's stop waits with its alert), once per endpoint and month; each
    stop or failure replies in the budget's thread. A failed stop is not tried again."""
    spent = [f.spec for f in figures if f.spec.stops_endpoints and f.spent >= f.spec.amount]
    if not spent or not endpoints:
        return
    with context.sessions() as session:
        alerts = {a.budget: a.id for a in session.scalars(
            select(Alert).where(Alert.budget.in_([b.name for b in spent]), Alert.period == period,
                                Alert.kind == "threshold", Alert.threshold == "100"))}
    for budget in spent:
        alert_id = alerts.get(budget.name)
        channel = budget.channel or context.settings.alert_channel
        if alert_id is None or not channel:
            continue
        for endpoint in (e for e in endpoints if budget.matches(e.as_row())):
            key = guard.budget_stop_key(alert_id, endpoint.id)
            with context.sessions() as session:
                if claims.status(session, guard.STOP_JOB, key) in ("done", "failed"):
                    continue
            outcome = guard.stop_endpoint(context, endpoint.id, key=key, by=f"budget:{budget.name}", now=now)
            if outcome.status == "stopped":
                headline = f"Stopped endpoint {endpoint.name} ({endpoint.model}): budget {budget.name} is spent"
                advice = "Start it again in together.ai when the spend is agreed; this budget will not stop it again this month."
            elif outcome.status == "failed":
                headline = f"Could not stop endpoint {endpoint.name} for budget {budget.name}"
                advice = "It is still running and billing. Stop it in together.ai; budget-guard does not retry on its own."
            else:
                continue
            record_alert(context, AlertDraft(budget.name, period, "stop", endpoint.id[:64], channel, headline,
                                        [outcome.reason[:1].upper() + outcome.reason[1:]], advice), now, render)


def _runway_alerts(session: Session, context: Context, ledger: _Ledger, now: datetime) -> list[AlertDraft]:
    """The prepaid balance running out within RUNWAY_ALERT_DAYS, and again within a day: once each
    per balance (setting it or a top-up starts over)."""
    settings = context.settings
    channel = settings.alert_channel
    state = runway.prepaid_state(session, settings) if channel else None
    if state is None:
        return []
    local_now = now.astimezone(settings.zone)
    spent, unpriced = runway.spent_since(session, state.stated.at)
    outlook = runway.project_runway(state, spent, ledger.total(local_now), now=now, zone=settings.zone,
                                    unpriced_tokens=unpriced)
    days = outlook.days_left
    if days is None or days >= settings.runway_alert_days:
        return []
    limit = str(settings.runway_alert_days)
    threshold, covers = ("1", (limit,)) if days < 1 else (limit, ())
    empty = outlook.empty_at.astimezone(settings.zone) if outlook.empty_at else local_now
    if outlook.left <= 0:
        headline = f"The prepaid balance is used up: {usd(-outlook.left)} over"
    elif days < 1:
        headline = f"The prepaid balance runs out within a day, around {empty:%a} {empty:%H:%M}"
    else:
        headline = f"The prepaid balance runs out in about {days:.0f} days, around {empty:%a, %b} {empty.day}"
    details = [runway.summary(outlook)]
    if outlook.unpriced_tokens:
        details.append(f"{outlook.unpriced_tokens:,} tokens of models with no known price are not counted.")
    advice = ("Top up at together.ai, then record it with `/budget credit add AMOUNT`; "
              "or slow the spend named below.")
    today = local_now.date()
    week = today - timedelta(days=7)
    drivers = _top(ledger.spend_by_label(list(ledger.series), lambda d: week <= d <= today))
    return [AlertDraft(runway.ALERT_BUDGET, state.version, "runway", threshold, channel, headline, details, advice,
                       drivers, covers=covers)]


def _idle_alerts(session: Session, context: Context, now: datetime) -> list[AlertDraft]:
    """Dedicated endpoints up with no tokens for IDLE_ENDPOINT_HOURS: one alert per idle stretch."""
    channel = context.settings.alert_channel
    if not channel:
        return []
    drafts = []
    for idle in idle_endpoints(session, context.settings, now):
        e = idle.endpoint
        hours = int((now - idle.idle_since).total_seconds() // 3600)
        cost = usd(idle.cost) + (" and uptime on hardware with no price" if idle.unpriced_minutes else "")
        headline = f"Endpoint {e.name} has been idle for {hours} h, costing {usd(idle.cost)}"
        details = [f"{e.model} on {e.hardware or 'unknown hardware'}: up since "
                   f"{e.up_since:%Y-%m-%d %H:%M} UTC, no tokens recorded against it since "
                   f"{idle.idle_since:%Y-%m-%d %H:%M} UTC; that uptime cost {cost}."]
        advice = ("If nothing needs it, an admin can stop it below (it bills every minute it is up); "
                  "if it serves traffic, record that usage (mode dedicated, or tag endpoint=NAME).")
        drafts.append(AlertDraft(guard.idle_alert_key(e.id), idle.idle_since.strftime("%Y-%m-%dT%H:%M"), "idle",
                                 "", channel, headline, details, advice, endpoint=e.id))
    return drafts


USAGE_KINDS = ("openai_usage", "generic_json")  # sources that should keep returning usage


def _source_alerts(session: Session, context: Context, now: datetime) -> list[AlertDraft]:
    """A source failing, or (usage sources) returning no usage, for longer than the limit:
    one alert per episode, keyed by when it began."""
    settings = context.settings
    channel = settings.alert_channel
    if not channel or not settings.sources:
        return []
    states = {s.name: s for s in session.scalars(select(SourceState))}
    limit = timedelta(hours=settings.source_silence_hours)
    drafts = []
    for source in settings.sources:
        state = states.get(source.name)
        if state is None or state.last_attempt is None:
            continue  # never run yet: nothing to say
        advice = f"Budgets cannot see this source's spend; check `budget-guard pull {source.name}`."
        if state.failing_since is not None:
            if now - state.failing_since <= limit:
                continue
            hours = int((now - state.failing_since).total_seconds() // 3600)
            headline = f"Usage source {source.name} has been failing for {hours} h"
            details = [f"Last success: {state.last_success:%Y-%m-%d %H:%M} UTC." if state.last_success
                       else "It has never succeeded.", f"Last error: {redact(state.last_error or 'not recorded')}"]
            began = state.failing_since
        elif source.kind in USAGE_KINDS and state.last_data_at is not None and state.last_success is not None:
            began = state.last_data_at
            if now - began <= limit:
                continue
            hours = int((now - began).total_seconds() // 3600)
            headline = f"Usage source {source.name} has returned no usage for {hours} h"
            details = [f"No usage newer than {began:%Y-%m-%d %H:%M} UTC.",
                       f"Last pulled: {state.last_success:%Y-%m-%d %H:%M} UTC, without error."]
            advice = ("If nothing ran, ignore this; otherwise the source is not seeing the usage "
                      f"(wrong project or key?): check `budget-guard pull {source.name}`.")
        else:
            continue
        drafts.append(AlertDraft(f"source:{source.name}", began.strftime("%Y-%m-%dT%H:%M"), "source", "",
                                 channel, headline, details, advice))
    return drafts


def _price_alerts(session: Session, context: Context, rows: list[DailyRow], today: date) -> list[AlertDraft]:
    channel = context.settings.alert_channel
    if not channel:
        return []
    in_use = {r.model for r in rows if r.day >= today - timedelta(days=30)}
    history: dict[str, list[SyncedPrice]] = defaultdict(list)
    for price in session.scalars(select(SyncedPrice).order_by(SyncedPrice.effective_from)):
        history[price.model].append(price)
    drafts = []
    recent = datetime.combine(today - timedelta(days=7), datetime.min.time(), timezone.utc)
    for model, prices in history.items():
        if model not in in_use or len(prices) < 2:
            continue
        new, old = prices[-1], prices[-2]
        if new.effective_from < recent:
            continue
        headline = (f"Price change for {model}: {usd(old.input_rate)}/{usd(old.output_rate)} → "
                    f"{usd(new.input_rate)}/{usd(new.output_rate)} per 1M tokens")
        details = [f"In effect from {new.effective_from:%Y-%m-%d}; usage since then is costed at the new price."]
        drafts.append(AlertDraft(f"price:{model}", new.effective_from.strftime("%Y-%m-%d"), "price", "", channel,
                                 headline, details, "Forecasts already use the new price; re-check budgets that include it."))
    return drafts


# A later alert of these kinds replies in the thread of the period's first alert of the kinds named.
THREADED = {"threshold": ("threshold", "forecast"), "forecast": ("threshold", "forecast"),
            "stop": ("threshold", "forecast"), "runway": ("runway",)}


def record_alert(context: Context, draft: AlertDraft, now: datetime, render: AlertRenderer | None) -> bool:
    """Insert the alert and its outbox message together; False if another run got there first."""
    with context.sessions() as session, session.begin():
        dialect = session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        result = session.execute(
            insert(Alert).values(budget=draft.budget, period=draft.period, kind=draft.kind, threshold=draft.threshold,
                                 outbox_key=draft.key, created_at=now)
            .on_conflict_do_nothing(index_elements=["budget", "period", "kind", "threshold"])
            .returning(Alert.id)
        )
        alert_id = result.scalar()
        if alert_id is None:
            return False
        for threshold in draft.covers:
            session.execute(
                insert(Alert).values(budget=draft.budget, period=draft.period, kind=draft.kind, threshold=threshold,
                                     outbox_key=draft.key, created_at=now)
                .on_conflict_do_nothing(index_elements=["budget", "period", "kind", "threshold"])
            )
        kinds = THREADED.get(draft.kind)
        first = session.scalar(
            select(Alert.outbox_key).where(Alert.budget == draft.budget, Alert.period == draft.period,
                                           Alert.kind.in_(kinds), Alert.outbox_key != draft.key)
            .order_by(Alert.id).limit(1)
        ) if kinds else None
        text, blocks = render(draft, alert_id) if render else (draft.headline, [])
        enqueue(session, key=draft.key, kind="alert", channel=draft.channel, text=text, blocks=blocks or None,
                thread_of=first, now=now)
    return True


def alert_channel(context: Context, alert_id: int, budget: str) -> str | None:
    """The channel an alert was posted in (or is queued for); None if there is no such alert
    for that budget (a forged or stale button)."""
    with context.sessions() as session:
        alert = session.get(Alert, alert_id)
        if alert is None or alert.budget != budget:
            return None
        row = session.execute(select(OutboxMessage.posted_channel, OutboxMessage.channel)
                              .where(OutboxMessage.dedupe_key == alert.outbox_key)).first()
    return (row[0] or row[1]) if row is not None else None


def acknowledge(context: Context, alert_id: int, budget: str, user: str, *, now: datetime | None = None) -> Alert | None:
    """Record who acknowledged an alert; None if no such alert (a forged or stale button)."""
    now = now or datetime.now(timezone.utc)
    with context.sessions() as session, session.begin():
        alert = session.get(Alert, alert_id)
        if alert is None or alert.budget != budget:
            return None
        alert.acknowledged_by = user
        alert.acknowledged_at = now
        return alert


def snooze(context: Context, alert_id: int, budget: str, user: str, *, now: datetime | None = None,
           hours: int = 24) -> Alert | None:
    """Hold the budget's new alerts for a day; they are posted after, if still true."""
    now = now or datetime.now(timezone.utc)
    with context.sessions() as session, session.begin():
        alert = session.get(Alert, alert_id)
        if alert is None or alert.budget != budget:
            return None
        alert.snoozed_until = now + timedelta(hours=hours)
        alert.acknowledged_by = alert.acknowledged_by or user
        return alert


def breakdown(context: Context, alert_id: int, budget: str, *, now: datetime | None = None, top: int = 10
              ) -> tuple[list[tuple[str, Decimal]], Decimal] | None:
    """This month's spend in the scope of an alert's budget by model and dimensions, biggest
    first; None if there is no such alert for that budget (a forged or stale button)."""
    now = now or datetime.now(timezone.utc)
    zone = context.settings.zone
    today = now.astimezone(zone).date()
    start, end = month_bounds(today, zone)
    with context.sessions() as session:
        alert = session.get(Alert, alert_id)
        if alert is None or alert.budget != budget:
            return None
        specs = {b.name: b for b in budget_store.active_budgets(session)}
        spec = specs.get(budget)
        if spec is None and not budget.startswith(("source:", "price:", runway.ALERT_BUDGET, "drift:")):
            return None
        rows = daily_rows(session, start, end, zone)
    if spec is not None:
        rows = [r for r in rows if spec.matches(r)]
    elif budget.startswith("price:"):
        rows = [r for r in rows if r.model == budget.removeprefix("price:")]
    elif budget.startswith("drift:"):  # drift:BILLER:MODEL, cut to 64 characters
        model = budget.split(":", 2)[-1]
        rows = [r for r in rows if r.model == model or (len(budget) == 64 and r.model.startswith(model))]
    spend: dict[str, Decimal] = defaultdict(Decimal)
    for row in rows:
        spend[_label(row)] += from_nanos(row.cost_nanos)
    ordered = sorted(spend.items(), key=lambda item: -item[1])
    return ordered[:top], sum(spend.values(), Decimal(0))


def month_spend(context: Context, specs: list[BudgetSpec], *, now: datetime | None = None) -> list[tuple[BudgetSpec, Decimal]]:
    """Each budget's spend so far this month."""
    now = now or datetime.now(timezone.utc)
    zone = context.settings.zone
    start, end = month_bounds(now.astimezone(zone).date(), zone)
    with context.sessions() as session:
        rows = daily_rows(session, start, end, zone)
    return [(spec, sum((from_nanos(r.cost_nanos) for r in rows if spec.matches(r)), Decimal(0))) for spec in specs]
