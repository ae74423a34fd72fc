"""Computed vs provider-billed: the ledger's cost of each model and UTC day against what the
provider billed (OpenAI's costs API, through each `openai_usage` source's admin key) and what
LiteLLM priced the same calls at (its `response_cost`, kept beside our cost in the buckets).

OpenAI's bill covers every call the organization made, so it is compared with the ledger's cost
of that model from all sources (a call recorded twice shows as drift); LiteLLM's price covers the
calls it logged, so it is compared with those buckets alone.

A model whose month so far differs by more than `reconcile_drift_percent` (and is worth at least
`reconcile_min_usd`) gets one drift alert a month, naming the likely cause: an unpriced model, a
price on the provider's side that is not configured here (the same share every day), a price
change (matched, then not, from one day on), or usage that is missing or counted twice.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

from sqlalchemy import select

from db.models import Alert, from_nanos
from db.totals import ModelDay, model_days
from jobs.budgets.check import record_alert
from jobs.budgets.rules import AlertDraft, AlertRenderer, Driver
from jobs.config.context import Context
from jobs.usage.sources import RetryPolicy, SourceError
from jobs.usage.sources.openai_costs import Bill, Billed, pull_bill
from pricing.catalog import Catalog
from pricing.money import percent, usd

log = logging.getLogger(__name__)
LITELLM = "litellm"
TWICE = Decimal("1.8")  # the ledger at this many times the bill, from more than one source: counted twice


@dataclass(frozen=True)
class DayComparison:
    """One model on one UTC day: our cost against the biller's."""

    biller: str  # the openai_usage source's name, or "litellm"
    day: date
    model: str
    ours: Decimal  # what we priced (unpriced tokens are not in it)
    theirs: Decimal
    unpriced_tokens: int = 0
    our_tokens: int = 0
    their_tokens: int | None = None  # when the bill counted tokens
    sources: tuple[str, ...] = ()  # ledger sources holding the model that day

    @property
    def difference(self) -> Decimal:
        return self.ours - self.theirs

    @property
    def share(self) -> Decimal | None:
        """The difference as a share of the biller's amount (None when it billed nothing)."""
        return self.difference / self.theirs if self.theirs else None


@dataclass(frozen=True)
class ModelDrift:
    """One model over the window: both totals, and whether (and why) they disagree."""

    biller: str
    model: str
    ours: Decimal
    theirs: Decimal
    days: int
    drifting: bool
    cause: str | None
    largest: list[DayComparison]

    @property
    def share(self) -> Decimal | None:
        return (self.ours - self.theirs) / self.theirs if self.theirs else None


@dataclass
class Reconciliation:
    since: date
    until: date  # exclusive
    days: list[DayComparison] = field(default_factory=list)
    models: list[ModelDrift] = field(default_factory=list)
    unattributed: dict[str, Decimal] = field(default_factory=dict)  # billed, not per model (tools, storage)
    errors: list[str] = field(default_factory=list)


def biller_label(biller: str) -> str:
    """LiteLLM, or OpenAI (naming the source when it is not called openai)."""
    return "LiteLLM" if biller == LITELLM else "OpenAI" if biller == "openai" else f"OpenAI ({biller})"


def reconcile(context: Context, since: date, until: date, *, retry: RetryPolicy | None = None) -> Reconciliation:
    """Compare every biller we can read with the ledger over the UTC days [since, until)."""
    result = Reconciliation(since, until)
    start = datetime.combine(since, time(0), timezone.utc)
    end = datetime.combine(until, time(0), timezone.utc)
    with context.sessions() as session:
        rows = model_days(session, start, end)
    result.days.extend(_litellm_days(rows))
    for source in context.settings.sources:
        if source.kind != "openai_usage":
            continue
        try:
            bill = pull_bill(source, since, until, retry=retry)
        except SourceError as exc:
            result.errors.append(f"{source.name}: {exc}; not reconciled")
            log.warning("reconcile: %s: %s", source.name, exc)
            continue
        result.days.extend(_openai_days(source.name, bill, rows, context.catalog))
        total = sum(bill.other.values(), Decimal(0))
        if total:
            result.unattributed[source.name] = total
    result.days.sort(key=lambda d: (d.biller, d.model, d.day))
    settings = context.settings
    share = settings.reconcile_drift_percent / 100
    by_model: dict[tuple[str, str], list[DayComparison]] = defaultdict(list)
    for day in result.days:
        by_model[(day.biller, day.model)].append(day)
    for (biller, model), days in by_model.items():
        result.models.append(_summary(biller, model, days, share, settings.reconcile_min_usd))
    result.models.sort(key=lambda m: (not m.drifting, -abs(m.ours - m.theirs), m.biller, m.model))
    return result


def _litellm_days(rows: list[ModelDay]) -> list[DayComparison]:
    return [
        DayComparison(LITELLM, r.day, r.model, from_nanos(r.ours_where_reported_nanos), from_nanos(r.reported_nanos),
                      unpriced_tokens=r.unpriced_where_reported, sources=(LITELLM,))
        for r in rows
        if r.source == LITELLM and (r.reported_nanos or r.ours_where_reported_nanos or r.unpriced_where_reported)
    ]


def _openai_days(source: str, bill: Bill, rows: list[ModelDay], catalog: Catalog) -> list[DayComparison]:
    """The bill's models named as the ledger counts them: the catalog model an API name resolves to
    (`gpt-4o-mini-2024-07-18` is `openai/gpt-4o-mini`), or the name itself when none matches."""
    billed_by: dict[tuple[date, str], Billed] = {}
    for (day, name), billed in bill.by_model.items():
        match = catalog.match(name)  # as the ledger resolved the same API name when it recorded it
        key = (day, match.label if match is not None else name)
        total = billed_by.setdefault(key, Billed(counted_tokens=True))
        total.amount += billed.amount
        total.input_tokens += billed.input_tokens
        total.output_tokens += billed.output_tokens
        total.counted_tokens = total.counted_tokens and billed.counted_tokens
    ledger: dict[tuple[date, str], list[ModelDay]] = defaultdict(list)
    for row in rows:
        ledger[(row.day, row.model)].append(row)
    ours_in_scope = {key for key, held in ledger.items() if any(r.source == source for r in held)}
    days = []
    for key in sorted(set(billed_by) | ours_in_scope):
        day, model = key
        billed = billed_by.get(key)
        held = ledger.get(key, [])
        days.append(DayComparison(
            source, day, model,
            ours=from_nanos(sum(r.cost_nanos for r in held)),
            theirs=billed.amount if billed else Decimal(0),
            unpriced_tokens=sum(r.unpriced_tokens for r in held),
            our_tokens=sum(r.input_tokens + r.output_tokens for r in held),
            their_tokens=billed.input_tokens + billed.output_tokens if billed and billed.counted_tokens else None,
            sources=tuple(sorted({r.source for r in held})),
        ))
    return days


def _summary(biller: str, model: str, days: list[DayComparison], share: Decimal, minimum: Decimal) -> ModelDrift:
    ours = sum((d.ours for d in days), Decimal(0))
    theirs = sum((d.theirs for d in days), Decimal(0))
    unpriced = sum(d.unpriced_tokens for d in days)
    off = abs(ours - theirs) > share * theirs if theirs else ours > 0
    drifting = max(ours, theirs) >= minimum and (off or (unpriced > 0 and theirs > 0))
    largest = sorted(days, key=lambda d: -abs(d.difference))[:3]
    cause = _likely_cause(biller, model, days, ours, theirs, unpriced, share) if drifting else None
    return ModelDrift(biller, model, ours, theirs, len(days), drifting, cause, largest)


def _likely_cause(biller: str, model: str, days: list[DayComparison], ours: Decimal, theirs: Decimal,
                  unpriced: int, share: Decimal) -> str:
    who = "LiteLLM" if biller == LITELLM else "OpenAI"
    if unpriced:
        return (f"an unpriced model: {unpriced:,} tokens of {model} have no price in budget-guard; add a [[prices]] "
                f"entry for it, then `budget-guard reprice`")
    if biller != LITELLM:
        sources = sorted({s for d in days for s in d.sources})
        if len(sources) > 1 and theirs and ours / theirs >= TWICE:
            return (f"the same calls recorded twice: the ledger holds {model} from {', '.join(sources)}, and its cost "
                    f"is {(ours / theirs).quantize(Decimal('0.1'))}× the bill; keep one way in for them")
        if all(d.their_tokens is not None for d in days):
            our_tokens = sum(d.our_tokens for d in days)
            their_tokens = sum(d.their_tokens or 0 for d in days)
            if their_tokens and abs(our_tokens - their_tokens) > share * their_tokens:
                return (f"usage missing or extra: budget-guard holds {our_tokens:,} tokens of {model} where OpenAI "
                        f"billed {their_tokens:,} (a service not reporting, a source not pulled, or a call counted twice)")
    ratios = [(d.day, d.theirs / d.ours) for d in days if d.theirs > 0 and d.ours > 0]  # the bill per our dollar
    if ratios and ours:
        overall = theirs / ours
        tolerance = share / 2
        if all(abs(r - overall) <= tolerance for _, r in ratios):
            gap = percent(abs(overall - 1))
            if biller == LITELLM:
                side = "lower" if overall < 1 else "higher"
                return (f"a price configured on one side only: LiteLLM prices {model} {gap} {side} than budget-guard "
                        f"on every day (a negotiated price in one of them: [[prices]] here, model_info in LiteLLM)")
            if overall < 1:
                return (f"a negotiated price that is not configured: {who} bills {model} {gap} below budget-guard's "
                        f"price on every day; add it as a [[prices]] entry")
            return (f"a price change not in the catalog yet: {who} bills {model} {gap} above budget-guard's price on "
                    f"every day; check the provider's price list and add a [[prices]] entry")
        for index in range(1, len(ratios)):
            before, after = ratios[:index], ratios[index:]
            level = after[0][1]
            if (all(abs(r - 1) <= tolerance for _, r in before)
                    and all(abs(r - level) <= tolerance for _, r in after) and abs(level - 1) > share):
                changed = after[0][0]
                side = "below" if level < 1 else "above"
                return (f"a price change on or about {changed:%Y-%m-%d}: the costs matched before, and since then "
                        f"{who} bills {model} {percent(abs(level - 1))} {side} budget-guard's price; add a [[prices]] "
                        f"entry for it starting then")
    worst = max(days, key=lambda d: abs(d.difference))
    return (f"usage missing or extra on some days (the largest gap on {worst.day:%Y-%m-%d}, "
            f"{usd(abs(worst.difference))}): a service not reporting, or a call counted twice")


# -- the monthly drift alert -----------------------------------------------------------------------


def drift_window(now: datetime) -> tuple[date, date]:
    """The whole UTC days of the month that yesterday belongs to, up to today (the 1st: last month)."""
    today = now.astimezone(timezone.utc).date()
    yesterday = today - timedelta(days=1)
    return yesterday.replace(day=1), today


def drift_drafts(result: Reconciliation, channel: str) -> list[AlertDraft]:
    """One alert per drifting model and biller, for the month of the window."""
    period = result.since.strftime("%Y-%m")
    last = result.until - timedelta(days=1)
    drafts = []
    for drift in result.models:
        if not drift.drifting or drift.cause is None:
            continue
        label = biller_label(drift.biller)
        gap = f"{'+' if drift.ours >= drift.theirs else '-'}{percent(abs(drift.share))}" if drift.share is not None \
            else "no bill"
        headline = f"Cost drift on {drift.model}: budget-guard {usd(drift.ours)}, {label} {usd(drift.theirs)} ({gap})"
        details = [f"{result.since:%b} {result.since.day}–{last:%b} {last.day} (UTC), {drift.days} day(s) compared.",
                   f"Likely cause: {drift.cause}."]
        drivers = [Driver(f"{d.day:%Y-%m-%d}: {usd(d.ours)} here, {usd(d.theirs)} billed", abs(d.difference))
                   for d in drift.largest if d.difference]
        drafts.append(AlertDraft(
            budget=f"drift:{drift.biller}:{drift.model}"[:64], period=period, kind="drift", threshold="",
            channel=channel, headline=headline, details=details,
            advice="Fix the price or the source named above, then `budget-guard reprice` and `budget-guard reconcile`.",
            drivers=drivers,
        ))
    return drafts


def check_drift(context: Context, *, now: datetime | None = None, render: AlertRenderer | None = None,
                retry: RetryPolicy | None = None) -> list[AlertDraft]:
    """Reconcile the month so far; record and queue a drift alert for each newly drifting model."""
    now = now or datetime.now(timezone.utc)
    channel = context.settings.alert_channel
    if not channel:
        return []
    since, until = drift_window(now)
    if until <= since:
        return []
    drafts = drift_drafts(reconcile(context, since, until, retry=retry), channel)
    with context.sessions() as session:
        snoozed = set(session.scalars(select(Alert.budget).where(Alert.kind == "drift", Alert.snoozed_until > now)))
    return [draft for draft in drafts if draft.budget not in snoozed and record_alert(context, draft, now, render)]
