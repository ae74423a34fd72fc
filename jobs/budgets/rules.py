"""The alert rules: what the ledger and the sources say that needs saying, as `AlertDraft`s.

Budgets: a threshold crossed, a forecast over the amount, a spike; then a source failing or
silent, a price change of a model in use, a prepaid runway running short and an idle dedicated
endpoint. The rules read spend through a `ScopeIndex` and the batch saving through a function
asked only when an alert shows it; they record nothing (`jobs.budgets.check` does)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import SourceState, SyncedPrice, from_nanos
from db.rollups import DailyRow
from jobs.budgets import guard
from jobs.budgets.specs import BudgetSpec
from jobs.config.context import Context
from jobs.config.redaction import redact
from jobs.forecast import runway
from jobs.forecast.projection import Projection
from jobs.forecast.scope_index import ScopeIndex
from jobs.usage.endpoints import EndpointInfo, idle_endpoints
from pricing.money import percent, usd

SPIKE_MINIMUM = Decimal("1.00")  # a "spike" smaller than this many dollars is noise
USAGE_KINDS = ("openai_usage", "generic_json")  # sources that should keep returning usage


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


def month_key(day: date) -> str:
    return day.strftime("%Y-%m")


def label(row: DailyRow) -> str:
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


def budget_alerts(budget: BudgetSpec, index: ScopeIndex, channel: str, now: datetime, context: Context,
                  endpoints: list[EndpointInfo], saving: Callable[[BudgetSpec], Decimal | None]) -> list[AlertDraft]:
    """A budget's threshold, forecast and spike alerts; `saving` is asked only if one of the first two fires."""
    local_now = now.astimezone(context.settings.zone)
    today = local_now.date()
    period = month_key(today)
    month_start = today.replace(day=1)
    keys = index.keys_in(budget.scope)
    spend = index.spent(keys)
    drivers = _top(index.spend_by(keys, label, lambda d: d >= month_start))
    thresholds = sorted(set(budget.thresholds) | ({100} if budget.stops_endpoints else set()))
    crossed = [t for t in thresholds if spend * 100 >= budget.amount * t]
    projection = index.projection(keys, budget.name) if budget.forecast and spend < budget.amount else None
    over = projection if projection is not None and projection.point > budget.amount else None
    advice = _advice(saving(budget)) if crossed or over else ""
    drafts: list[AlertDraft] = []

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

    if over is not None:
        drafts.append(_forecast_alert(budget, over, spend, period, channel, advice, drivers))

    daily = index.daily(keys)
    spike = _spike(daily, today, context.settings.spike_factor)
    if spike is not None:
        day, actual, expected = spike
        week = today - timedelta(days=8)
        before = index.spend_by(keys, label, lambda d: week <= d < day)
        on_day = index.spend_by(keys, label, lambda d: d == day)
        increases = {name: nanos - before.get(name, 0) // 7 for name, nanos in on_day.items()}
        headline = f"Spend spike in {budget.name} on {day:%b} {day.day}: {usd(actual)} against {usd(expected)} expected"
        details = [f"{usd(actual)} in one day, {(actual / expected).quantize(Decimal('0.1'))}× the expected "
                   f"{usd(expected)} for {budget.describe_scope()}."]
        drafts.append(AlertDraft(budget.name, day.isoformat(), "spike", "", channel, headline, details,
                                 "If this was not planned, find the caller among the drivers below.",
                                 _top(increases), budget.mention, budget.amount, spend))
    return drafts


def _advice(saving: Decimal | None) -> str:
    return (f"Moving the offline work in this scope to batch would save about {usd(saving)}/month "
            "(`budget-guard advise`)." if saving else "Check the drivers below; `/costquote compare` finds cheaper models.")


def _forecast_alert(budget: BudgetSpec, projection: Projection, spend: Decimal, period: str, channel: str,
                    advice: str, drivers: list[Driver]) -> AlertDraft:
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
    return AlertDraft(budget.name, period, "forecast", "", channel, headline, details, advice,
                      drivers, budget.mention, budget.amount, spend, projection)


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


def _stop_notice(in_scope: list[EndpointInfo]) -> str:
    rule = "This budget stops the dedicated endpoints in its scope when it is spent"
    if not in_scope:
        return f"{rule}; none of them is running."
    names = ", ".join(e.name for e in in_scope[:10]) + (f" and {len(in_scope) - 10} more" if len(in_scope) > 10 else "")
    return f"{rule}: stopping {names} now; what together.ai answers follows in this thread."


def runway_alerts(session: Session, context: Context, index: ScopeIndex, now: datetime) -> list[AlertDraft]:
    """The prepaid balance running out within RUNWAY_ALERT_DAYS, and again within a day: once each
    per balance (setting it or a top-up starts over)."""
    settings = context.settings
    channel = settings.alert_channel
    state = runway.prepaid_state(session, settings) if channel else None
    if state is None:
        return []
    local_now = now.astimezone(settings.zone)
    spent, unpriced = runway.spent_since(session, state.stated.at)
    outlook = runway.project_runway(state, spent, index.total(), now=now, zone=settings.zone,
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
    drivers = _top(index.spend_by(index.all, label, lambda d: week <= d <= today))
    return [AlertDraft(runway.ALERT_BUDGET, state.version, "runway", threshold, channel, headline, details, advice,
                       drivers, covers=covers)]


def idle_alerts(session: Session, context: Context, now: datetime) -> list[AlertDraft]:
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


def source_alerts(session: Session, context: Context, now: datetime) -> list[AlertDraft]:
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


def price_alerts(session: Session, context: Context, rows: list[DailyRow], today: date) -> list[AlertDraft]:
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
