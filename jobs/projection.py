"""Month-end spend from the ledger: forecast tokens per model, price them day by day.

A model's daily tokens are turned into a cost series at today's price for the forecaster
(so the shape, not past prices, drives it); each remaining day's expected tokens are then
priced at the price in effect on that day, so a start-dated price change moves the forecast
the right way. Dedicated endpoints bill uptime, not tokens: their cost series is forecast
as it is. Groups (per model, project, feature, or a budget scope) sum their parts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from db.models import from_nanos
from db.rollups import DailyRow
from jobs.forecast import MonthForecast, forecast_month, forecast_total
from pricing.catalog import Catalog, Price
from pricing.costs import token_cost


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


@dataclass
class _Series:
    """One (model, mode)'s daily tokens and costs, with its token mix."""

    model: str
    mode: str
    tokens: dict[date, float] = field(default_factory=lambda: defaultdict(float))
    cost: dict[date, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    unpriced: int = 0


def _mode_price(price: Price | None, mode: str) -> Price | None:
    if price is None:
        return None
    return price.batch() if mode == "batch" else price


def _cost_per_token(price: Price | None, series: _Series) -> Decimal | None:
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
    month_start = today.replace(day=1)
    by_group: dict[str, dict[tuple[str, str], _Series]] = defaultdict(dict)
    actual_by_group: dict[str, dict[date, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    unpriced_by_group: dict[str, int] = defaultdict(int)
    for row in rows:
        if row.day > today:
            continue
        group = group_of(row)
        series = by_group[group].setdefault((row.model, row.mode), _Series(row.model, row.mode))
        cost = from_nanos(row.cost_nanos)
        series.cost[row.day] += cost
        series.tokens[row.day] += row.tokens
        actual_by_group[group][row.day] += cost
        if row.day >= today - timedelta(days=14):
            series.input_tokens += row.input_tokens
            series.cached_tokens += row.cached_input_tokens
            series.output_tokens += row.output_tokens
        if row.day >= month_start:
            unpriced_by_group[group] += row.unpriced_tokens

    # Each (group, model, mode) becomes a cost series at today's price (or its own cost, for
    # dedicated uptime). Series whose price stays put for the rest of the month are summed into
    # one part per group; a series with a price change ahead stays a part of its own.
    month_end = (month_start + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    parts: dict[str, dict[date, float]] = {}
    repricing: dict[str, Callable[[date], Decimal]] = {}
    owners: dict[str, str] = {}
    for group, series_map in by_group.items():
        steady: dict[date, float] = defaultdict(float)
        for (model, mode), series in series_map.items():
            today_rate = _cost_per_token(_mode_price(catalog.price_of(model, today), mode), series)
            if mode == "dedicated" or not today_rate:
                daily = {d: float(v) for d, v in series.cost.items()}
                ratio: Callable[[date], Decimal] = lambda d: Decimal(1)
            else:
                daily = {d: float(Decimal(t) * today_rate) for d, t in series.tokens.items()}
                ratio = _ratio(catalog, series, today_rate)
                if any(ratio(today + timedelta(days=n)) != 1 for n in range(1, (month_end - today).days + 1)):
                    name = f"{group}\x1f{model}\x1f{mode}"
                    parts[name], repricing[name], owners[name] = daily, ratio, group
                    continue
            for day, value in daily.items():
                steady[day] += value
        if steady:
            name = f"{group}\x1fsteady"
            parts[name], repricing[name], owners[name] = dict(steady), (lambda d: Decimal(1)), group

    if not parts:
        empty = Projection("total", Decimal(0), Decimal(0), Decimal(0), Decimal(0), [], "no usage yet")
        return empty, {}

    groups: dict[str, Projection] = {}
    all_forecasts: list[MonthForecast] = []
    for group in by_group:
        names = [n for n in parts if owners[n] == group]
        group_total, part_forecasts = forecast_total({n: parts[n] for n in names}, today, day_fraction)
        forecasts = [part_forecasts[n] for n in names]
        all_forecasts.extend(forecasts)
        groups[group] = _combine(group, forecasts, [repricing[n] for n in names], actual_by_group[group],
                                 month_start, unpriced_by_group[group], interval_from=group_total)
    if len(groups) == 1:
        only = next(iter(groups.values()))
        return Projection("total", only.month_to_date, only.point, only.low, only.high, only.remaining, only.note,
                          only.unpriced_tokens, only.daily), groups
    summed: dict[date, float] = defaultdict(float)
    for daily in parts.values():
        for day, value in daily.items():
            summed[day] += value
    whole = forecast_month(summed, today, day_fraction)
    ordered = [repricing[n] for g in by_group for n in parts if owners[n] == g]
    total = _combine("total", all_forecasts, ordered, _sum_days(actual_by_group.values()), month_start,
                     sum(unpriced_by_group.values()), interval_from=whole)
    return total, groups


def _ratio(catalog: Catalog, series: _Series, today_rate: Decimal) -> Callable[[date], Decimal]:
    def ratio(day: date) -> Decimal:
        rate = _cost_per_token(_mode_price(catalog.price_of(series.model, day), series.mode), series)
        return rate / today_rate if rate is not None else Decimal(1)

    return ratio


def _sum_days(maps: Iterable[dict[date, Decimal]]) -> dict[date, Decimal]:
    total: dict[date, Decimal] = defaultdict(Decimal)
    for daily in maps:
        for day, amount in daily.items():
            total[day] += amount
    return total


def _combine(key: str, forecasts: list[MonthForecast], ratios: list[Callable[[date], Decimal]],
             actual: dict[date, Decimal], month_start: date, unpriced: int,
             interval_from: MonthForecast | None = None) -> Projection:
    """Sum parts: actual month-to-date, plus each part's remaining days priced on their day."""
    mtd = sum((v for d, v in actual.items() if d >= month_start), Decimal(0))
    remaining: dict[date, Decimal] = defaultdict(Decimal)
    low_spread = high_spread = Decimal(0)
    for forecast, ratio in zip(forecasts, ratios):
        for day, expected in forecast.remaining:
            remaining[day] += Decimal(str(expected)) * ratio(day)
        low_spread += Decimal(str(forecast.point - forecast.low))
        high_spread += Decimal(str(forecast.high - forecast.point))
    future = sum(remaining.values(), Decimal(0))
    point = mtd + future
    if interval_from is not None and interval_from.point > 0:
        # The total's interval comes from the summed series, scaled to the priced point.
        scale = point / Decimal(str(interval_from.point)) if interval_from.point else Decimal(1)
        low_spread = Decimal(str(interval_from.point - interval_from.low)) * scale
        high_spread = Decimal(str(interval_from.high - interval_from.point)) * scale
    notes = [f.note for f in forecasts if f.note]
    note = max(set(notes), key=notes.count) if notes else ""
    return Projection(
        key=key,
        month_to_date=mtd,
        point=point,
        low=max(mtd, point - low_spread),
        high=point + high_spread,
        remaining=sorted(remaining.items()),
        note=note,
        unpriced_tokens=unpriced,
        daily={d: v for d, v in actual.items() if d >= month_start},
    )
