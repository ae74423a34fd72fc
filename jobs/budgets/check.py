"""The budget check: what `jobs.budgets.rules` finds becomes alerts, each recorded once per
(budget, period, kind, threshold) and queued in the outbox in the same transaction, so replicas
and restarts cannot post one twice. It also keeps each budget's figures for `/v1/budgets/status`,
and stops the endpoints in scope of a budget with `on_exceed = "stop-endpoints"` once it is spent
(`jobs.budgets.guard`: once per endpoint and month). The alert buttons' actions (acknowledge,
snooze, breakdown) and `/budget list`'s month spend read the recorded alerts and the ledger here."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.engine import dialect_insert
from db.models import Alert, OutboxMessage, from_nanos
from db.rollups import daily_rows, local_midnight, month_bounds
from jobs.advice.batch import Savings, first_usage_day
from jobs.budgets import guard, rules
from jobs.budgets import specs as budget_store
from jobs.budgets import status as budget_status
from jobs.budgets.rules import AlertDraft, AlertRenderer, month_key
from jobs.budgets.specs import BudgetSpec
from jobs.config.context import Context
from jobs.forecast import runway
from jobs.forecast.projection import HISTORY_DAYS
from jobs.forecast.scope_index import ScopeIndex
from jobs.runtime import claims
from jobs.runtime.outbox import enqueue
from jobs.usage.endpoints import EndpointInfo, endpoint_sources, running_endpoints

log = logging.getLogger(__name__)


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
        index = ScopeIndex(rows, local_now, context.catalog)
        savings = Savings(rows, today=today, first_day=first_usage_day(session, zone) or today,
                          offline=settings.offline, catalog=context.catalog)
        endpoints = running_endpoints(session, endpoint_sources(settings))
        figures = [budget_figures(index, budget) for budget in budgets]
        drafts: list[AlertDraft] = []
        for budget in budgets:
            if budget.name in snoozed:
                continue
            channel = budget.channel or settings.alert_channel
            if not channel:
                log.warning("budget %s has no channel and ALERT_CHANNEL is not set; not alerting", budget.name)
                continue
            drafts.extend(rules.budget_alerts(budget, index, channel, now, context, endpoints,
                                              lambda spec: savings.saving(spec.scope)))
        drafts.extend(rules.source_alerts(session, context, now))
        drafts.extend(rules.price_alerts(session, context, rows, today))
        drafts.extend(rules.runway_alerts(session, context, index, now))
        drafts.extend(rules.idle_alerts(session, context, now))

    fresh = [d for d in drafts if (d.budget, d.period, d.kind, d.threshold) not in recorded and d.budget not in snoozed]
    if dry_run:
        return fresh
    with context.sessions() as session, session.begin():
        budget_status.store(session, figures, period=month_key(today), now=now)
    posted = []
    for draft in fresh:
        if record_alert(context, draft, now, render):
            posted.append(draft)
    _stop_exceeded(context, figures, endpoints, month_key(today), now, render)
    return posted


def budget_figures(index: ScopeIndex, budget: BudgetSpec) -> budget_status.Figures:
    """A budget's spend this month and its month-end projection."""
    keys = index.keys_in(budget.scope)
    return budget_status.Figures(budget, index.spent(keys), index.projection(keys, budget.name))


def _snoozed(session: Session, now: datetime) -> set[str]:
    return set(session.scalars(select(Alert.budget).where(Alert.snoozed_until.is_not(None), Alert.snoozed_until > now)))


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


# A later alert of these kinds replies in the thread of the period's first alert of the kinds named.
THREADED = {"threshold": ("threshold", "forecast"), "forecast": ("threshold", "forecast"),
            "stop": ("threshold", "forecast"), "runway": ("runway",)}


def record_alert(context: Context, draft: AlertDraft, now: datetime, render: AlertRenderer | None) -> bool:
    """Insert the alert and its outbox message together; False if another run got there first."""
    with context.sessions() as session, session.begin():
        result = session.execute(
            dialect_insert(session, Alert).values(budget=draft.budget, period=draft.period, kind=draft.kind, threshold=draft.threshold,
                                 outbox_key=draft.key, created_at=now)
            .on_conflict_do_nothing(index_elements=["budget", "period", "kind", "threshold"])
            .returning(Alert.id)
        )
        alert_id = result.scalar()
        if alert_id is None:
            return False
        for threshold in draft.covers:
            session.execute(
                dialect_insert(session, Alert).values(budget=draft.budget, period=draft.period, kind=draft.kind,
                                                      threshold=threshold, outbox_key=draft.key, created_at=now)
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
    local_now = (now or datetime.now(timezone.utc)).astimezone(context.settings.zone)
    with context.sessions() as session:
        alert = session.get(Alert, alert_id)
        if alert is None or alert.budget != budget:
            return None
        specs = {b.name: b for b in budget_store.active_budgets(session)}
        spec = specs.get(budget)
        if spec is None and not budget.startswith(("source:", "price:", runway.ALERT_BUDGET, "drift:")):
            return None
        index = _month_index(context, session, local_now)
    if spec is not None:
        keys = index.keys_in(spec.scope)
    elif budget.startswith("price:"):
        keys = index.keys_in({"model": budget.removeprefix("price:")})
    elif budget.startswith("drift:"):  # drift:BILLER:MODEL, cut to 64 characters
        model = budget.split(":", 2)[-1]
        keys = index.keys_where(lambda r: r.model == model or (len(budget) == 64 and r.model.startswith(model)))
    else:
        keys = index.all
    spend = {name: from_nanos(nanos) for name, nanos in
             index.spend_by(keys, rules.label, lambda d: True, zeros=True).items()}
    ordered = sorted(spend.items(), key=lambda item: -item[1])
    return ordered[:top], sum(spend.values(), Decimal(0))


def month_spend(context: Context, specs: list[BudgetSpec], *, now: datetime | None = None) -> list[tuple[BudgetSpec, Decimal]]:
    """Each budget's spend so far this month."""
    local_now = (now or datetime.now(timezone.utc)).astimezone(context.settings.zone)
    with context.sessions() as session:
        index = _month_index(context, session, local_now)
    return [(spec, index.spent(index.keys_in(spec.scope))) for spec in specs]


def _month_index(context: Context, session: Session, local_now: datetime) -> ScopeIndex:
    """This month's rows (no history: nothing here is forecast)."""
    start, end = month_bounds(local_now.date(), context.settings.zone)
    return ScopeIndex(daily_rows(session, start, end, context.settings.zone), local_now, context.catalog)
