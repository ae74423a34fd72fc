"""Month-end spend forecast: pure functions over a daily series, no database.

The method: a robust weekday profile times a recent level, combined with a plain 7-day
mean. Which level estimator (and whether to add a short trend) is picked per series by
how each candidate did on the series' own past at the same horizon; how much the plain
mean weighs, and the 80% interval, come from those same past errors (split-conformal
quantiles), so neither the mix nor the width is hand-set.

Its parts: `jobs.forecast.daily_model` (the weekday profile, spikes, level shifts and the
level candidates fitted at one origin day), `jobs.forecast.combination` (the candidate chosen
by its past errors, mixed with the plain level) and `jobs.forecast.intervals` (the 80%
interval). Here: the baselines, the month's forecast and its note, a total over parts, and
when a limit is crossed.
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from statistics import fmean

from jobs.forecast.combination import CALIBRATION_WEEKS, choose, combined_path, past_outcomes
from jobs.forecast.daily_model import CANDIDATES, FIT_DAYS, Fit, origin_fit
from jobs.forecast.intervals import MIN_RESIDUALS, conformal_bounds, prior_bounds

__all__ = [
    "MonthForecast",
    "forecast_month",
    "forecast_total",
    "run_rate",
    "trailing_7",
]

_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class MonthForecast:
    """Where the month will land, with an 80% interval and a note on what drove it."""

    month_to_date: float  # sum of observed days of this month incl. the partial day
    point: float  # forecast month total
    low: float  # 80% interval
    high: float
    # expected value per day still to come; the rest of today first, when today is partial
    remaining: list[tuple[date, float]]
    note: str  # one short sentence on what drove it


# ----------------------------------------------------------------------------- baselines


def run_rate(month_to_date: float, day: int, days_in_month: int) -> float:
    """Run-rate baseline: month-to-date x days_in_month / day."""
    return month_to_date * days_in_month / day if day > 0 else 0.0


def trailing_7(daily: Mapping[date, float], today: date) -> float:
    """Trailing-7 baseline: month-to-date + mean of the last 7 days x days left.

    The mean is over the days of the last 7 that are present (none present: 0).
    """
    start = today.replace(day=1)
    days_in_month = calendar.monthrange(today.year, today.month)[1]
    mtd = sum(v for d, v in daily.items() if start <= d <= today)
    last = [daily[d] for d in (today - timedelta(k) for k in range(7)) if d in daily]
    return mtd + (fmean(last) if last else 0.0) * (days_in_month - today.day)



# ----------------------------------------------------------------------------- public API


def forecast_month(
    daily: Mapping[date, float], today: date, day_fraction: float = 1.0
) -> MonthForecast:
    """Forecast the total of `today`'s month from the daily series.

    daily: value per local date up to and including `today` (today possibly partial:
    `day_fraction` of it has elapsed, 0 < .. <= 1). Missing dates are missing (not zero)
    unless the caller passes 0. History before the month is used; dates after `today` are
    ignored. Values must be finite and non-negative.
    """
    if not 0.0 <= day_fraction <= 1.0:
        raise ValueError(f"day_fraction must be between 0 and 1, got {day_fraction!r}")
    days: dict[date, float] = {}
    for d, v in daily.items():
        if d > today:
            continue
        v = float(v)
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"value for {d.isoformat()} must be a finite number >= 0, got {v!r}")
        days[d] = v
    month_start = today.replace(day=1)
    month_end = today.replace(day=calendar.monthrange(today.year, today.month)[1])
    mtd = sum(v for d, v in days.items() if d >= month_start)
    complete = day_fraction >= 1.0
    first_future = today + timedelta(1) if complete else today
    future_dates = [first_future + timedelta(j) for j in range((month_end - first_future).days + 1)]

    if not days:
        nothing = [(d, 0.0) for d in future_dates]
        return MonthForecast(0.0, 0.0, 0.0, 0.0, nothing, "no usage recorded yet")

    # Dense array from the first observed date (bounded to what the model can read) up to
    # the last complete day, which is the model's origin; a partial today stays out of it.
    origin_date = today if complete else today - timedelta(1)
    horizon = (month_end - origin_date).days
    first_date = min(days)
    keep = 7 * CALIBRATION_WEEKS + horizon + FIT_DAYS
    start = max(first_date, origin_date - timedelta(keep))
    n = (origin_date - start).days + 1
    x: list[float | None] = [days.get(start + timedelta(i)) for i in range(max(n, 0))]
    weekday0 = start.weekday()
    origin = n - 1
    history_days = (origin_date - first_date).days + 1

    fit = origin_fit(x, origin, weekday0) if n > 0 and any(v is not None for v in x) else None
    if fit is None:  # only a partial first day: extrapolate its pace
        pace = mtd / day_fraction if days.get(today) and day_fraction > 0 else 0.0
        remaining = [(d, pace * ((1 - day_fraction) if d == today else 1.0)) for d in future_dates]
        rest = sum(v for _, v in remaining)
        note = "first day only: pace of today so far, wide interval" if rest else "no spend so far"
        return MonthForecast(mtd, mtd + rest, mtd, mtd + 2 * rest, remaining, note)

    first_seen = next(i for i, v in enumerate(x) if v is not None)
    outcomes = past_outcomes(x, weekday0, origin, horizon, first_seen) if horizon > 0 else []
    best, weight, residuals = choose(outcomes)
    path = combined_path(fit, best, (weekday0 + origin) % 7, horizon, weight)
    remaining = [
        (d, p * (1 - day_fraction) if d == today else p)
        for d, p in zip(future_dates, path, strict=True)
    ]
    rest = sum(p for _, p in remaining)

    # Missing days of this month (after the series began) are estimated, not zero.
    missing = [
        d
        for d in (month_start + timedelta(i) for i in range(today.day - (0 if complete else 1)))
        if d not in days and d > first_date
    ]
    imputed = sum(fit.levels[best] * fit.factors[d.weekday()] for d in missing)

    prior = horizon > 0 and len(residuals) < MIN_RESIDUALS
    lo, hi = conformal_bounds(residuals) if residuals else (0.0, 0.0)
    if prior:
        plo, phi = prior_bounds(fit, history_days, horizon)
        lo, hi = min(lo, plo), max(hi, phi)
    point = mtd + imputed + rest
    low = mtd + imputed + max(0.0, rest * (1 + lo))
    high = mtd + imputed + max(0.0, rest * (1 + hi))
    note = _note(fit, best, origin_date, missing, history_days, prior, mtd + imputed, rest)
    return MonthForecast(mtd, point, min(low, point), max(high, point), remaining, note)


def _ordinal(day: int) -> str:
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _note(
    fit: Fit,
    best: int,
    origin: date,
    missing: list[date],
    history_days: int,
    prior: bool,
    so_far: float,
    rest: float,
) -> str:
    """One short sentence on what drove the forecast."""
    parts: list[str] = []
    f = fit.factors
    if max(f) - min(f) > 0.15:
        low_day = min(range(7), key=f.__getitem__)
        high_day = max(range(7), key=f.__getitem__)
        parts.append(
            f"weekday pattern ({_WEEKDAYS[high_day]} highest, {_WEEKDAYS[low_day]} "
            f"{(1 - f[low_day] / f[high_day]) * 100:.0f}% lower)"
        )
    if fit.shift_days:
        since = origin - timedelta(fit.shift_days - 1)
        level, before = fit.levels[best], fit.shift_from
        if level == 0:
            parts.append(f"no spend since the {_ordinal(since.day)}, assumed stopped")
        elif before == 0:
            parts.append(f"started again on the {_ordinal(since.day)}")
        else:
            change = (level / before - 1) * 100
            direction = "up" if change > 0 else "down"
            parts.append(f"level {direction} {abs(change):.0f}% since the {_ordinal(since.day)}")
    else:
        kind, p = CANDIDATES[best]
        if kind == "trend" and fit.slopes[best]:
            weekly = fit.slopes[best] * 7 / fit.levels[best] * 100 if fit.levels[best] else 0.0
            parts.append(f"trend {weekly:+.0f}%/week")
        elif kind == "halflife":
            parts.append("level weighted to the last few days")
        else:
            parts.append(f"level of the last {p} days")
    if fit.clipped:
        days = sorted(origin - timedelta(k) for k in fit.clipped)
        label = ", ".join(_ordinal(d.day) for d in days[-3:])
        parts.append(f"spike{'s' if len(days) > 1 else ''} on the {label} not extrapolated")
    if missing:
        parts.append(f"{len(missing)} missing day{'s' if len(missing) > 1 else ''} estimated")
    if history_days < 28:
        days = f"{history_days} day{'s' if history_days > 1 else ''}"
        parts.append(f"only {days} of history, wide interval")
    elif prior:
        parts.append("little history to calibrate, interval widened")
    if so_far == 0 and rest == 0:
        return "no spend so far and none expected"
    return "; ".join(parts)


def _summed_series(parts: Mapping[str, Mapping[date, float]], today: date) -> dict[date, float]:
    """Sum the parts per date. Inside a part's own first..last date a missing day makes the
    total missing; outside it the part counts as 0 (not yet started, or stopped)."""
    spans = {k: (min(s), max(s)) for k, s in parts.items() if any(d <= today for d in s)}
    dates = {d for s in parts.values() for d in s if d <= today}
    total: dict[date, float] = {}
    for d in dates:
        value, ok = 0.0, True
        for key, (first, last) in spans.items():
            v = parts[key].get(d)
            if v is None:
                if first <= d <= last:
                    ok = False
                    break
            else:
                value += v
        if ok:
            total[d] = value
    return total


def forecast_total(
    parts: Mapping[str, Mapping[date, float]], today: date, day_fraction: float = 1.0
) -> tuple[MonthForecast, dict[str, MonthForecast]]:
    """Forecast each part and the total, with total.point == sum of the parts' points
    and total.remaining the per-day sum of theirs.

    The total's interval comes from forecasting the summed series (its relative spread,
    applied to the parts' sum) and is never narrower than the parts' half-widths combined
    as if independent (root of the sum of squares) nor than the widest single part.
    """
    if not parts:
        return forecast_month({}, today, day_fraction), {}
    each = {key: forecast_month(series, today, day_fraction) for key, series in parts.items()}
    mtd = sum(f.month_to_date for f in each.values())
    point = sum(f.point for f in each.values())
    by_day: dict[date, float] = {}
    for f in each.values():
        for d, v in f.remaining:
            by_day[d] = by_day.get(d, 0.0) + v
    remaining = sorted(by_day.items())

    summed = forecast_month(_summed_series(parts, today), today, day_fraction)
    rest = point - mtd
    summed_rest = summed.point - summed.month_to_date
    if summed_rest > 0:
        down = (summed.point - summed.low) / summed_rest * rest
        up = (summed.high - summed.point) / summed_rest * rest
    else:
        down = up = 0.0
    part_down = [f.point - f.low for f in each.values()]
    part_up = [f.high - f.point for f in each.values()]
    down = max(down, math.sqrt(sum(v * v for v in part_down)), max(part_down))
    up = max(up, math.sqrt(sum(v * v for v in part_up)), max(part_up))
    low = max(mtd, point - down)
    note = f"sum of {len(each)} part{'s' if len(each) != 1 else ''}; {summed.note}"
    total = MonthForecast(mtd, point, min(low, point), point + up, remaining, note)
    return total, each
