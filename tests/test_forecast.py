"""The month-end forecaster on synthetic series whose answers are known."""

from __future__ import annotations

import calendar
import random
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal

import pytest

from jobs.forecast.forecaster import (
    MonthForecast,
    forecast_month,
    forecast_total,
    run_rate,
    trailing_7,
)
from jobs.forecast.projection import Projection

TODAY = date(2025, 3, 15)  # a Saturday; March has 31 days, 16 of them still to come
DAYS_IN_MONTH = 31
MONTH = [date(2025, 3, d) for d in range(1, DAYS_IN_MONTH + 1)]


def series(
    fn: Callable[[date], float | None], start: date = date(2024, 10, 1), end: date = TODAY
) -> dict[date, float]:
    """{date: fn(date)} from start to end; fn returning None leaves the date missing."""
    out = {}
    d = start
    while d <= end:
        value = fn(d)
        if value is not None:
            out[d] = value
        d += timedelta(1)
    return out


def month_total(fn: Callable[[date], float]) -> float:
    return sum(fn(d) for d in MONTH)


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def width(f: MonthForecast) -> float:
    """The interval's width relative to what is still to come."""
    return (f.high - f.low) / (f.point - f.month_to_date)


def test_flat_series_forecasts_the_same_every_day_with_a_tight_interval():
    f = forecast_month(series(lambda d: 100.0), TODAY)
    assert f.month_to_date == pytest.approx(1500.0)
    assert f.point == pytest.approx(3100.0)
    assert f.low == pytest.approx(3100.0) and f.high == pytest.approx(3100.0)
    assert [d for d, _ in f.remaining] == MONTH[15:]
    assert all(v == pytest.approx(100.0) for _, v in f.remaining)


def test_weekly_pattern_is_followed_day_by_day():
    pattern = [120.0, 120.0, 120.0, 120.0, 120.0, 50.0, 50.0]  # Mon..Sun
    f = forecast_month(series(lambda d: pattern[d.weekday()]), TODAY)
    assert f.point == pytest.approx(month_total(lambda d: pattern[d.weekday()]), rel=1e-9)
    assert [v for _, v in f.remaining] == pytest.approx([pattern[d.weekday()] for d in MONTH[15:]])
    assert "weekday pattern" in f.note and "Sat" in f.note


def test_step_change_mid_month_uses_the_new_level():
    def spend(d: date) -> float:
        return 100.0 if d < date(2025, 3, 8) else 200.0

    f = forecast_month(series(spend), TODAY)
    assert f.point == pytest.approx(month_total(spend))
    assert "level up 100% since the 8th" in f.note


def test_a_one_day_spike_is_counted_but_not_extrapolated():
    def spend(d: date) -> float:
        return 1000.0 if d == date(2025, 3, 14) else 100.0

    f = forecast_month(series(spend), TODAY)
    truth = month_total(spend)  # 3100 + 900
    assert f.month_to_date == pytest.approx(2400.0)
    assert abs(f.point - truth) < 0.1 * 900  # under a tenth of the spike's excess carried forward
    naive = trailing_7(series(spend), TODAY)  # spreads the spike over the rest of the month
    assert rel(naive, truth) > 0.4
    assert "spike on the 14th not extrapolated" in f.note


def test_linear_growth_is_extrapolated():
    def spend(d: date) -> float:
        return 100.0 + 2.0 * (d - date(2024, 10, 1)).days

    f = forecast_month(series(spend), TODAY)
    assert rel(f.point, month_total(spend)) < 0.01
    assert "trend" in f.note


def test_new_model_with_a_few_days_uses_them_and_says_the_interval_is_wide():
    f = forecast_month(series(lambda d: 50.0, start=date(2025, 3, 10)), TODAY)
    assert f.month_to_date == pytest.approx(300.0)
    assert f.point == pytest.approx(300.0 + 16 * 50.0)
    assert f.low < f.point < f.high
    assert width(f) >= 0.5
    assert "only 6 days of history" in f.note


def test_model_that_stopped_forecasts_nothing_more():
    f = forecast_month(series(lambda d: 100.0 if d < date(2025, 3, 11) else 0.0), TODAY)
    assert f.month_to_date == pytest.approx(1000.0)
    assert f.point == pytest.approx(1000.0)
    assert all(v == 0 for _, v in f.remaining)
    assert "no spend since the 11th" in f.note


def test_all_zero_series_forecasts_zero():
    f = forecast_month(series(lambda d: 0.0), TODAY)
    assert (f.month_to_date, f.point, f.low, f.high) == (0.0, 0.0, 0.0, 0.0)
    assert len(f.remaining) == 16


def test_missing_days_are_estimated_not_taken_as_zero():
    def spend(d: date) -> float | None:
        return None if d in (date(2025, 3, 3), date(2025, 3, 4), date(2025, 2, 20)) else 100.0

    f = forecast_month(series(spend), TODAY)
    assert f.month_to_date == pytest.approx(1300.0)  # observed days only
    assert f.point == pytest.approx(3100.0)
    assert "2 missing days estimated" in f.note


def test_empty_series_gives_zero_not_a_crash():
    f = forecast_month({}, TODAY)
    assert (f.month_to_date, f.point, f.low, f.high) == (0.0, 0.0, 0.0, 0.0)
    assert [d for d, _ in f.remaining] == MONTH[15:]


def test_single_day_gives_a_wide_interval():
    f = forecast_month({TODAY: 70.0}, TODAY)
    assert f.point == pytest.approx(70.0 * 17)
    assert f.low == pytest.approx(70.0)  # nothing more may come
    assert f.high > 2 * f.point - f.low - 1e-9  # at least as far above as below
    assert "only 1 day of history" in f.note


def test_partial_day_holds_only_the_rest_of_today():
    history = series(lambda d: 100.0, end=TODAY - timedelta(1))
    history[TODAY] = 25.0  # a quarter of the day has gone by
    f = forecast_month(history, TODAY, day_fraction=0.25)
    assert f.month_to_date == pytest.approx(1425.0)
    assert f.remaining[0] == (TODAY, pytest.approx(75.0))
    assert f.remaining[1][0] == TODAY + timedelta(1)
    assert f.point == pytest.approx(3100.0)


def test_noise_widens_the_interval():
    def noisy(spread: float) -> dict[date, float]:
        rng = random.Random(7)
        return series(lambda d: 100.0 * (1 + rng.uniform(-spread, spread)), start=date(2024, 1, 1))

    calm, wild = forecast_month(noisy(0.05), TODAY), forecast_month(noisy(0.6), TODAY)
    assert calm.low < calm.point < calm.high
    assert width(wild) > 3 * width(calm)


def test_bad_values_are_refused():
    with pytest.raises(ValueError, match="2025-03-01"):
        forecast_month({date(2025, 3, 1): -1.0}, TODAY)
    with pytest.raises(ValueError, match="day_fraction"):
        forecast_month({}, TODAY, day_fraction=1.5)


def test_total_is_the_sum_of_its_parts_with_an_honest_interval():
    rng = random.Random(3)
    parts = {
        "llama": series(lambda d: 100.0 * rng.uniform(0.8, 1.2)),
        "qwen": series(
            lambda d: [90.0, 90, 90, 90, 90, 20, 20][d.weekday()] * rng.uniform(0.7, 1.3)
        ),
        "new": series(lambda d: 40.0, start=date(2025, 3, 10)),
        "silent": {},
    }
    total, each = forecast_total(parts, TODAY, 0.5)
    assert set(each) == set(parts)
    assert total.point == pytest.approx(sum(f.point for f in each.values()))
    assert total.month_to_date == pytest.approx(sum(f.month_to_date for f in each.values()))
    for i, (day, value) in enumerate(total.remaining):
        assert value == pytest.approx(sum(f.remaining[i][1] for f in each.values()))
        assert all(f.remaining[i][0] == day for f in each.values())
    down = [f.point - f.low for f in each.values()]
    up = [f.high - f.point for f in each.values()]
    assert total.point - total.low >= max(down) - 1e-9
    assert total.high - total.point >= (sum(u * u for u in up)) ** 0.5 - 1e-9
    assert total.note.startswith("sum of 4 parts")


def test_crossing_is_the_first_day_the_projection_reaches_the_limit_and_none_once_over():
    days = [(date(2025, 3, 15) + timedelta(days=i), Decimal(100)) for i in range(17)]
    projection = Projection("all", Decimal(1500), Decimal(3200), Decimal(3000), Decimal(3400), days, "")
    assert projection.crossing(Decimal(2000)) == date(2025, 3, 19)  # 1500 + 5 x 100
    assert projection.crossing(Decimal(10_000)) is None
    assert projection.crossing(Decimal(1000)) is None  # already over: the threshold alert says so, not a date


def test_baselines():
    history = series(lambda d: float(d.day))
    assert run_rate(120.0, 15, 30) == pytest.approx(240.0)
    mtd = sum(range(1, 16))
    assert trailing_7(history, TODAY) == pytest.approx(mtd + 12.0 * 16)  # mean of 9..15
    assert calendar.monthrange(2025, 3)[1] == DAYS_IN_MONTH
