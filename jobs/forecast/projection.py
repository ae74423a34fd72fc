"""Month-end spend from the ledger: forecast tokens per model, price them day by day.

A model's daily tokens are turned into a cost series at today's price for the forecaster
(so the shape, not past prices, drives it); each remaining day's expected tokens are then
priced at the price in effect on that day, so a start-dated price change moves the forecast
the right way. Dedicated endpoints and GPU clusters bill uptime, not tokens: their cost series
is forecast as it is. Training (fine-tuning jobs) is a one-off purchase: it counts in
month-to-date and is not extrapolated (a $500 job is not $500 a day from now on). Series whose price stays put are summed and forecast together; groups (per
model, project, feature, or a budget scope) sum their parts, so totals match.

Rows are first indexed into integer `Series` (tokens and nano-dollars per day); callers that
project many overlapping groups (budgets) go through `jobs.forecast.scope_index`, which indexes
once and projects each scope once."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from db.models import from_nanos
from db.rollups import DailyRow
from jobs.forecast.forecaster import MonthForecast, forecast_month, forecast_total
from pricing.catalog import Catalog, Price
from pricing.costs import token_cost

ONE_OFF_MODES = frozenset({"training"})
MIX_DAYS = 14  # the token mix (input, cached, output) that prices a model's expected tokens
HISTORY_DAYS = 63  # days before the month that a projection reads (weekday pattern, calibration)


def fraction_of_day(local_now: datetime) -> float:
    """How much of the local day has passed; at least a minute, so today is never empty."""
    midnight = local_now.replace(hour=0, minute=0, second=0, microsecond=0)
    return max(min((local_now - midnight).total_seconds() / 86400, 1.0), 1 / 1440)


@dataclass(frozen=True)
class Projection:
    """Month-to-date and month-end spend of one group, in dollars."""

    key: str
    month_to_date: Decimal
    point: Decimal
    low: Decimal
    high: Decimal
    remaining: list[tuple[date, Decimal]]
    note: str
    unpriced_tokens: int = 0
    daily: dict[date, Decimal] = field(default_factory=dict)

    def crossing(self, limit: Decimal) -> date | None:
        """The first day on which spend is expected to reach `limit`, or None."""
        total = self.month_to_date
        if total >= limit:
            return None
        for day, amount in self.remaining:
            total += amount
            if total >= limit:
                return day
        return None


@dataclass(slots=True)
class Series:
    """One model and mode's daily tokens and nano-dollars, with its recent token mix."""

    model: str
    mode: str
    tokens: dict[date, int] = field(default_factory=lambda: defaultdict(int))
    cost: dict[date, int] = field(default_factory=lambda: defaultdict(int))
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    unpriced: int = 0

    def add(self, other: "Series") -> None:
        for day, value in other.tokens.items():
            self.tokens[day] += value
        for day, value in other.cost.items():
            self.cost[day] += value
        self.input_tokens += other.input_tokens
        self.cached_tokens += other.cached_tokens
        self.output_tokens += other.output_tokens
        self.unpriced += other.unpriced


def index_rows(rows: Iterable[DailyRow], today: date, key: Callable[[DailyRow], Hashable]) -> dict[Hashable, Series]:
    """Rows up to `today` summed into one Series per `key(row)` (which must fix model and mode)."""
    month_start = today.replace(day=1)
    mix_start = today - timedelta(days=MIX_DAYS)
    index: dict[Hashable, Series] = {}
    for row in rows:
        if row.day > today:
            continue
        k = key(row)
        series = index.get(k)
        if series is None:
            series = index[k] = Series(row.model, row.mode)
        series.tokens[row.day] += row.input_tokens + row.output_tokens
        series.cost[row.day] += row.cost_nanos
        if row.day >= mix_start:
            series.input_tokens += row.input_tokens
            series.cached_tokens += row.cached_input_tokens
            series.output_tokens += row.output_tokens
        if row.day >= month_start:
            series.unpriced += row.unpriced_tokens
    return index


def combine(parts: Iterable[Series]) -> list[Series]:
    """Sum series of the same model and mode (e.g. all projects of a budget's scope)."""
    merged: dict[tuple[str, str], Series] = {}
    for part in parts:
        key = (part.model, part.mode)
        if key not in merged:
            merged[key] = Series(part.model, part.mode)
        merged[key].add(part)
    return list(merged.values())


class PriceMemo:
    """Per-run memo of price lookups: many series ask about the same model and day."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.memo: dict[tuple[str, str, date], Price | None] = {}

    def __call__(self, model: str, mode: str, day: date) -> Price | None:
        key = (model, mode, day)
        if key not in self.memo:
            self.memo[key] = self.catalog.usage_price(model, mode, day)
        return self.memo[key]


def _cost_per_token(price: Price | None, series: Series) -> Decimal | None:
    """Dollars per token of this series' input/cached/output mix at `price`."""
    total = series.input_tokens + series.output_tokens
    if price is None or total == 0:
        return None
    return token_cost(price, series.input_tokens, series.output_tokens, series.cached_tokens) / total


def project(
    rows: Iterable[DailyRow],
    *,
    today: date,
    day_fraction: float,
    catalog: Catalog,
    group_of: Callable[[DailyRow], str] = lambda row: "total",
) -> tuple[Projection, dict[str, Projection]]:
    """The total and each group's month-end projection from daily rows up to `today`."""
    index = index_rows(rows, today, lambda row: (group_of(row), row.model, row.mode))
    groups: dict[str, list[Series]] = defaultdict(list)
    for (group, _, _), series in index.items():  # type: ignore[misc]
        groups[group].append(series)
    return project_series(groups, today=today, day_fraction=day_fraction, catalog=catalog)


def project_series(
    groups: dict[str, list[Series]], *, today: date, day_fraction: float, catalog: Catalog,
    prices: PriceMemo | None = None,
) -> tuple[Projection, dict[str, Projection]]:
    """Project each group of (model, mode) series, and the total over all groups."""
    prices = prices or PriceMemo(catalog)
    month_start = today.replace(day=1)
    month_end = (month_start + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    ahead = [today + timedelta(days=n) for n in range(1, (month_end - today).days + 1)]
    parts: dict[str, dict[date, float]] = {}
    repricing: dict[str, Callable[[date], Decimal]] = {}
    owners: dict[str, str] = {}
    actual: dict[str, dict[date, int]] = {}
    unpriced: dict[str, int] = {}
    for group, series_list in groups.items():
        steady: dict[date, float] = defaultdict(float)
        group_actual: dict[date, int] = defaultdict(int)
        one_off_days: set[date] = set()
        unpriced[group] = 0
        for series in series_list:
            for day, nanos in series.cost.items():
                group_actual[day] += nanos
            unpriced[group] += series.unpriced
            if series.mode in ONE_OFF_MODES:
                one_off_days.update(series.cost)
                continue
            today_rate = _cost_per_token(prices(series.model, series.mode, today), series)
            if series.mode == "dedicated" or not today_rate:
                daily = _zero_filled({d: v / 1e9 for d, v in series.cost.items()}, today)
            else:
                rate = float(today_rate)
                daily = _zero_filled({d: t * rate for d, t in series.tokens.items()}, today)
                ratio = _ratio(prices, series, today_rate)
                if any(ratio(day) != 1 for day in ahead):
                    name = f"{group}\x1f{series.model}\x1f{series.mode}"
                    parts[name], repricing[name], owners[name] = daily, ratio, group
                    continue
            for day, value in daily.items():
                steady[day] += value
        actual[group] = group_actual
        if not steady and one_off_days and group not in owners.values():
            steady = defaultdict(float, _zero_filled(dict.fromkeys(one_off_days, 0.0), today))  # nothing to come
        if steady:
            name = f"{group}\x1fsteady"
            parts[name], repricing[name], owners[name] = dict(steady), _unchanged, group

    if not parts:
        empty = Projection("total", Decimal(0), Decimal(0), Decimal(0), Decimal(0), [], "no usage yet")
        return empty, {}

    projections: dict[str, Projection] = {}
    all_forecasts: list[MonthForecast] = []
    all_ratios: list[Callable[[date], Decimal]] = []
    for group in groups:
        names = [n for n in parts if owners[n] == group]
        if not names:
            continue
        group_total, part_forecasts = forecast_total({n: parts[n] for n in names}, today, day_fraction)
        forecasts = [part_forecasts[n] for n in names]
        ratios = [repricing[n] for n in names]
        all_forecasts.extend(forecasts)
        all_ratios.extend(ratios)
        projections[group] = _combine(group, forecasts, ratios, actual[group], month_start, unpriced[group],
                                      interval_from=group_total)
    if len(projections) == 1:
        only = next(iter(projections.values()))
        total = Projection("total", only.month_to_date, only.point, only.low, only.high, only.remaining, only.note,
                           only.unpriced_tokens, only.daily)
        return total, projections
    summed: dict[date, float] = defaultdict(float)
    for daily in parts.values():
        for day, value in daily.items():
            summed[day] += value
    all_actual: dict[date, int] = defaultdict(int)
    for group_actual in actual.values():
        for day, nanos in group_actual.items():
            all_actual[day] += nanos
    total = _combine("total", all_forecasts, all_ratios, all_actual, month_start, sum(unpriced.values()),
                     interval_from=forecast_month(summed, today, day_fraction))
    return total, projections


def _zero_filled(daily: dict[date, float], today: date) -> dict[date, float]:
    """The ledger has no row for a day without usage: that day is 0, not missing (the
    forecaster would impute it, forecasting weekend spend for a weekday-only job or a stopped
    model still running). Days before the series' first usage stay absent: no history yet."""
    if not daily:
        return daily
    first = min(daily)
    return {first + timedelta(days=n): daily.get(first + timedelta(days=n), 0.0)
            for n in range((today - first).days + 1)}


def _unchanged(day: date) -> Decimal:
    return Decimal(1)


def _ratio(prices: PriceMemo, series: Series, today_rate: Decimal) -> Callable[[date], Decimal]:
    def ratio(day: date) -> Decimal:
        rate = _cost_per_token(prices(series.model, series.mode, day), series)
        return rate / today_rate if rate is not None else Decimal(1)

    return ratio


def _combine(key: str, forecasts: list[MonthForecast], ratios: list[Callable[[date], Decimal]],
             actual_nanos: dict[date, int], month_start: date, unpriced: int,
             interval_from: MonthForecast | None = None) -> Projection:
    """Sum parts: actual month-to-date, plus each part's remaining days priced on their day."""
    daily = {d: from_nanos(v) for d, v in actual_nanos.items() if d >= month_start}
    mtd = sum(daily.values(), Decimal(0))
    remaining: dict[date, Decimal] = defaultdict(Decimal)
    low_spread = high_spread = Decimal(0)
    for forecast, ratio in zip(forecasts, ratios):
        for day, expected in forecast.remaining:
            remaining[day] += Decimal(repr(expected)) * (Decimal(1) if ratio is _unchanged else ratio(day))
        low_spread += Decimal(repr(forecast.point - forecast.low))
        high_spread += Decimal(repr(forecast.high - forecast.point))
    rest = sum(remaining.values(), Decimal(0))
    point = mtd + rest
    rest_at_today_price = interval_from.point - interval_from.month_to_date if interval_from is not None else 0.0
    if interval_from is not None and rest_at_today_price > 0:
        # The interval comes from the summed series: its spread is relative to what is still to come
        # (at today's price), so it scales with the priced rest, not with month-to-date.
        scale = rest / Decimal(repr(rest_at_today_price))
        low_spread = Decimal(repr(interval_from.point - interval_from.low)) * scale
        high_spread = Decimal(repr(interval_from.high - interval_from.point)) * scale
    notes = [f.note for f in forecasts if f.note]
    note = max(dict.fromkeys(notes), key=notes.count) if notes else ""  # ties: the first, not hash order
    return Projection(
        key=key,
        month_to_date=mtd,
        point=point,
        low=max(mtd, point - low_spread),
        high=point + high_spread,
        remaining=sorted(remaining.items()),
        note=note,
        unpriced_tokens=unpriced,
        daily=daily,
    )
