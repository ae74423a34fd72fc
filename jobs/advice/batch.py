"""Batch advice: serverless usage that looks like offline work, and what batch would save.

A workload is one model run by one (project, feature, API key) on serverless. Over the last
`window_days` complete local days it is a candidate when the operator marks one of its
dimensions offline, or when at least two of these signals agree (one alone is too often
innocent: a worldwide chat service runs off-hours, a developer's test run is a burst):

- off-hours: most of its tokens run before 08:00, from 20:00 or at weekends (even 24/7
  traffic puts 64% there, so the bar is 80%);
- bursts: on a typical day its busiest hour carries a quarter of the day or more (6x the
  mean hour; a daytime interactive curve is about 2x);
- batch-shaped requests: large requests with long outputs (2,000+ tokens and 500+ output
  tokens per request; a chat turn is about a thousand tokens with a few hundred out).

Models batch does not serve, and models without a price, are never suggested. The saving is
exact: the workload's tokens at today's serverless price minus the same tokens at the batch
price (`Price.batch()`), scaled from the days observed to a month of 30.44 days.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import UsageBucket
from db.rollups import DailyRow, daily_rows, local_day, local_midnight
from jobs.config.sections import Offline
from jobs.config.settings import Settings
from jobs.forecast.scopes import in_scope
from pricing.catalog import Catalog, Price
from pricing.costs import DAYS_PER_MONTH, token_cost

OFFHOURS_SHARE = 0.80  # uniform 24/7 traffic puts 108 of 168 weekly hours (64%) off-hours
BURST_RATIO = 6.0  # busiest hour / mean hour of the day, median over active days
BATCH_REQUEST_TOKENS = 2_000  # tokens per request, input and output
BATCH_OUTPUT_TOKENS = 500  # output tokens per request
MIN_SIGNALS = 2  # without an operator's mark, this many signals must agree
MIN_ACTIVE_DAYS = 3  # a pattern seen on fewer days is not evidence
MIN_MONTHLY_SAVING = Decimal("1")  # smaller suggestions are noise in a digest

WorkloadKey = tuple[str, str, str, str]  # model, project, feature, api_key
TaggedKey = tuple[WorkloadKey, str]  # a workload and one tags string


@dataclass(slots=True)
class Usage:
    """Serverless usage of one workload over the window, with what its days looked like."""

    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0
    offhours_tokens: int = 0
    unpriced_tokens: int = 0
    days: dict[date, list[int]] = field(default_factory=dict)  # day -> [tokens, peak hour tokens]

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add_row(self, row: DailyRow) -> None:
        self.input_tokens += row.input_tokens
        self.cached_input_tokens += row.cached_input_tokens
        self.output_tokens += row.output_tokens
        self.requests += row.requests
        self.offhours_tokens += row.offhours_tokens
        self.unpriced_tokens += row.unpriced_tokens
        self._add_day(row.day, row.tokens, row.peak_hour_tokens)

    def add(self, other: "Usage") -> None:
        self.input_tokens += other.input_tokens
        self.cached_input_tokens += other.cached_input_tokens
        self.output_tokens += other.output_tokens
        self.requests += other.requests
        self.offhours_tokens += other.offhours_tokens
        self.unpriced_tokens += other.unpriced_tokens
        for day, (tokens, peak) in other.days.items():
            self._add_day(day, tokens, peak)

    def _add_day(self, day: date, tokens: int, peak: int) -> None:
        # Parts of one day (different tags) may peak in different hours: keep the largest
        # peak, which never invents a burst that is not there.
        entry = self.days.setdefault(day, [0, 0])
        entry[0] += tokens
        entry[1] = max(entry[1], peak)


@dataclass(frozen=True)
class Candidate:
    """A workload that belongs on batch, what it costs a month and what batch would save."""

    model: str
    project: str
    feature: str
    api_key: str
    monthly_tokens: int
    monthly_cost: Decimal  # at today's serverless price
    monthly_saving: Decimal  # monthly_cost minus the same tokens at the batch price
    reasons: list[str]
    window_tokens: int = 0
    window_cost: Decimal = Decimal(0)
    window_saving: Decimal = Decimal(0)
    days_observed: int = 0
    batch_discount: Decimal = Decimal(0)  # percent off serverless

    @property
    def who(self) -> str:
        """Who runs it: the dimensions it names."""
        parts = [f"{name}={value}" for name, value in
                 (("project", self.project), ("feature", self.feature), ("api_key", self.api_key)) if value]
        return " · ".join(parts) or "(no project, feature or key recorded)"


@dataclass(frozen=True)
class Advice:
    """Candidates, largest saving first, and their total monthly saving."""

    candidates: list[Candidate]
    total_saving: Decimal
    window_start: date | None = None
    window_end: date | None = None  # exclusive: today
    days_observed: int = 0
    notes: list[str] = field(default_factory=list)  # what was left out and why
    usage_seen: bool = False  # any usage at all in the window (an empty ledger has none)


# ------------------------------------------------------------------ signals (pure)


def offline_marks(key: WorkloadKey, offline: Offline) -> list[str]:
    """Reasons from the operator's settings: each dimension of `key` marked offline."""
    _, project, feature, api_key = key
    reasons = []
    if feature and feature in offline.features:
        reasons.append(f"feature {feature!r} is marked offline in settings")
    if project and project in offline.projects:
        reasons.append(f"project {project!r} is marked offline in settings")
    if api_key and api_key in offline.api_keys:
        reasons.append(f"API key {api_key!r} is marked offline in settings")
    return reasons


def offhours_share(usage: Usage) -> float:
    """The share of tokens that ran off-hours (before 08:00, from 20:00, weekends)."""
    return usage.offhours_tokens / usage.tokens if usage.tokens else 0.0


def burst_ratio(usage: Usage) -> float:
    """The busiest hour against the mean hour of its day (1 = flat, 24 = all in one hour),
    the median over the days with usage and a recorded peak."""
    ratios = [peak * 24 / tokens for tokens, peak in usage.days.values() if tokens > 0 and peak > 0]
    return statistics.median(ratios) if ratios else 0.0


def request_shape(usage: Usage) -> tuple[float, float] | None:
    """Tokens and output tokens per request; None when requests were not recorded."""
    if usage.requests <= 0:
        return None
    return usage.tokens / usage.requests, usage.output_tokens / usage.requests


def pattern_signals(usage: Usage) -> list[str]:
    """Reasons the traffic itself gives for calling it offline work (possibly none)."""
    reasons = []
    share = offhours_share(usage)
    if share >= OFFHOURS_SHARE:
        reasons.append(f"{share:.0%} of its tokens run off-hours (nights and weekends)")
    ratio = burst_ratio(usage)
    if ratio >= BURST_RATIO:
        reasons.append(f"runs in bursts: its busiest hour is {ratio:.1f}x the day's average hour")
    shape = request_shape(usage)
    if shape is not None and shape[0] >= BATCH_REQUEST_TOKENS and shape[1] >= BATCH_OUTPUT_TOKENS:
        reasons.append(f"large requests with long outputs: {shape[0]:,.0f} tokens per request, "
                       f"{shape[1]:,.0f} of them output")
    return reasons


def offline_reasons(key: WorkloadKey, usage: Usage, offline: Offline) -> list[str]:
    """Why this workload looks offline; empty when it does not."""
    marked = offline_marks(key, offline)
    signals = pattern_signals(usage) if len(usage.days) >= MIN_ACTIVE_DAYS else []
    if marked:
        return marked + signals
    return signals if len(signals) >= MIN_SIGNALS else []


def batch_saving(price: Price, usage: Usage) -> tuple[Decimal, Decimal] | None:
    """(serverless cost, saving on batch) of the usage's tokens; None where batch does not serve it."""
    batch = price.batch()
    if batch is None:
        return None
    args = (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens)
    serverless = token_cost(price, *args)
    return serverless, serverless - token_cost(batch, *args)


def per_month(amount: Decimal, days: int) -> Decimal:
    """An amount observed over `days` days, per month of 30.44 days."""
    return amount * DAYS_PER_MONTH / days


# ------------------------------------------------------------------ from rows to advice


def index_usage(rows: list[DailyRow]) -> tuple[dict[TaggedKey, Usage], dict[TaggedKey, DailyRow]]:
    """Serverless rows summed per workload and tags, with one example row of each (for scopes)."""
    index: dict[TaggedKey, Usage] = {}
    examples: dict[TaggedKey, DailyRow] = {}
    for row in rows:
        if row.mode != "serverless":
            continue
        key = ((row.model, row.project, row.feature, row.api_key), row.tags)
        usage = index.get(key)
        if usage is None:
            usage = index[key] = Usage()
            examples[key] = row
        usage.add_row(row)
    return index, examples


def workloads(index: dict[TaggedKey, Usage]) -> dict[WorkloadKey, Usage]:
    """Per-tags usage merged into one Usage per workload (a workload with one tags string keeps its own)."""
    parts: dict[WorkloadKey, list[Usage]] = defaultdict(list)
    for (key, _), usage in index.items():
        parts[key].append(usage)
    merged: dict[WorkloadKey, Usage] = {}
    for key, usages in parts.items():
        if len(usages) == 1:
            merged[key] = usages[0]
            continue
        merged[key] = Usage()
        for usage in usages:
            merged[key].add(usage)
    return merged


def rank(usage_by_workload: dict[WorkloadKey, Usage], *, offline: Offline, catalog: Catalog, today: date,
         days: int) -> tuple[list[Candidate], list[str]]:
    """Candidates, largest monthly saving first, and notes on what was left out."""
    candidates: list[Candidate] = []
    no_batch: set[str] = set()
    unpriced: set[str] = set()
    for key, usage in usage_by_workload.items():
        reasons = offline_reasons(key, usage, offline)
        if not reasons or usage.tokens == 0:
            continue
        model = key[0]
        price = catalog.usage_price(model, "serverless", today)
        if price is None:
            unpriced.add(model)
            continue
        costs = batch_saving(price, usage)
        if costs is None:
            no_batch.add(model)
            continue
        cost, saving = costs
        monthly_saving = per_month(saving, days)
        if monthly_saving < MIN_MONTHLY_SAVING:
            continue
        candidates.append(Candidate(
            model=model, project=key[1], feature=key[2], api_key=key[3],
            monthly_tokens=int(per_month(Decimal(usage.tokens), days).to_integral_value()),
            monthly_cost=per_month(cost, days), monthly_saving=monthly_saving, reasons=reasons,
            window_tokens=usage.tokens, window_cost=cost, window_saving=saving, days_observed=days,
            batch_discount=price.batch_discount,
        ))
    candidates.sort(key=lambda c: (-c.monthly_saving, c.model, c.project, c.feature, c.api_key))
    notes = []
    if no_batch:
        notes.append(f"left out: batch does not serve {', '.join(sorted(no_batch))}")
    if unpriced:
        notes.append(f"left out: no price known for {', '.join(sorted(unpriced))}")
    return candidates, notes


class Savings:
    """Batch candidates of a window of complete days, overall or inside a scope, from daily rows
    already read (they may cover more days: only the window's count). The rows are indexed on
    the first ask, and each scope is ranked when asked, so a caller pays only for what it shows."""

    def __init__(self, rows: list[DailyRow], *, today: date, first_day: date, offline: Offline, catalog: Catalog,
                 window_days: int = 28) -> None:
        self.start = today - timedelta(days=window_days)  # first local day counted
        self.end = today  # excluded: it is not complete
        self.days_observed = max(1, (today - max(first_day, self.start)).days)  # a young ledger has fewer
        self.offline, self.catalog = offline, catalog
        self._rows = rows
        self._index: tuple[dict[TaggedKey, Usage], dict[TaggedKey, DailyRow]] | None = None
        self._scopes: dict[tuple[tuple[str, str], ...], Decimal | None] = {}

    def _indexed(self) -> tuple[dict[TaggedKey, Usage], dict[TaggedKey, DailyRow]]:
        if self._index is None:
            self._index = index_usage([row for row in self._rows if self.start <= row.day < self.end])
        return self._index

    @property
    def usage_seen(self) -> bool:
        """Any usage at all in the window (an empty ledger has none)."""
        return any(self.start <= row.day < self.end for row in self._rows)

    def candidates(self, scope: Mapping[str, str] | None = None) -> tuple[list[Candidate], list[str]]:
        """Candidates (inside `scope`, if given; signals are read on the in-scope part of each
        workload), largest saving first, and notes on what was left out."""
        index, examples = self._indexed()
        if scope:
            index = {key: usage for key, usage in index.items() if in_scope(scope, examples[key])}
        return rank(workloads(index), offline=self.offline, catalog=self.catalog, today=self.end,
                    days=self.days_observed)

    def saving(self, scope: Mapping[str, str]) -> Decimal | None:
        """The monthly saving of the candidates inside `scope`; None when there is none."""
        memo = tuple(sorted(scope.items()))
        if memo not in self._scopes:
            candidates, _ = self.candidates(scope)
            self._scopes[memo] = sum((c.monthly_saving for c in candidates), Decimal(0)) or None
        return self._scopes[memo]


def first_usage_day(session: Session, zone: ZoneInfo) -> date | None:
    """The local day of the ledger's first bucket; None when it is empty."""
    first_bucket = session.scalar(select(func.min(UsageBucket.bucket_start)))
    return local_day(first_bucket, zone) if first_bucket is not None else None


def read_savings(session: Session, settings: Settings, catalog: Catalog, *, now: datetime,
                 window_days: int = 28) -> Savings:
    """The window's rows read from the ledger, as `Savings`."""
    zone = settings.zone
    today = now.astimezone(zone).date()
    start = today - timedelta(days=window_days)
    rows = daily_rows(session, local_midnight(start, zone), local_midnight(today, zone), zone)
    return Savings(rows, today=today, first_day=first_usage_day(session, zone) or today, offline=settings.offline,
                   catalog=catalog, window_days=window_days)


def advise(session: Session, settings: Settings, catalog: Catalog, *, now: datetime | None = None,
           window_days: int = 28) -> Advice:
    """Serverless workloads of the last `window_days` complete days that belong on batch."""
    if window_days < 1:
        raise ValueError("window_days must be at least 1")
    savings = read_savings(session, settings, catalog, now=now or datetime.now(timezone.utc),
                           window_days=window_days)
    candidates, notes = savings.candidates()
    return Advice(candidates, sum((c.monthly_saving for c in candidates), Decimal(0)), savings.start, savings.end,
                  savings.days_observed, notes, savings.usage_seen)

