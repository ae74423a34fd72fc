"""Backtest the month-end forecaster on the shared Wikipedia series and print the table.

    python benchmarks/backtest_shared_series.py [FILE.csv ...] [--synthetic] [--timing]

Prints median APE per checkpoint and over all cases for the forecaster, run-rate and
trailing-7, the 80% interval coverage, and the wall time of the run.

--synthetic also runs the protocol on two families of generated series (fixed seeds, so
the figures are reproducible), to check the method is not fitted to the shared file:
  rw_shifts  weekly pattern x random-walk level x noise, one-day spikes, level shifts;
  trending   growth whose rate changes every few months (ramps, plateaus, declines).
Each family is scored over the cases of its three seeds pooled.
--timing measures forecast_month per call on distinct 90-day series (cold cache).
"""

from __future__ import annotations

import math
import random
import sys
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs.forecast.backtest import format_table, load_series, run_backtest, summarize  # noqa: E402
from jobs.forecast.daily_model import _fit  # noqa: E402
from jobs.forecast.forecaster import forecast_month  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "forecast"
DEFAULT = SHARED / "wikipedia_R_daily.csv"
SEEDS = (1, 2, 3)
_START = date(2018, 1, 1)
_DAYS = 6 * 365


def rw_shifts(seed: int) -> dict[date, float]:
    """Weekly pattern x random-walk level x noise, with one-day spikes and occasional
    level shifts (a launch, a model switched off)."""
    rng = random.Random(seed)
    profile = [1.15, 1.2, 1.2, 1.15, 1.05, 0.55, 0.5]
    log_level = math.log(1000.0)
    out = {}
    for i in range(_DAYS):
        d = _START + timedelta(i)
        log_level += rng.gauss(0, 0.02)
        if rng.random() < 1 / 75:
            log_level += rng.choice([-1, 1]) * rng.uniform(0.15, 0.6)
        log_level = min(max(log_level, math.log(100)), math.log(20000))
        v = math.exp(log_level) * profile[d.weekday()] * math.exp(rng.gauss(0, 0.12))
        if rng.random() < 0.02:
            v *= rng.uniform(2, 5)
        out[d] = round(v, 2)
    return out


def trending(seed: int) -> dict[date, float]:
    """Growth whose rate changes every few months (ramp-ups, plateaus, declines), weekly
    pattern, noise, rare spikes."""
    rng = random.Random(seed)
    profile = [1.1, 1.15, 1.15, 1.1, 1.0, 0.75, 0.75]
    log_level = math.log(200.0)
    growth = 0.0
    out = {}
    for i in range(_DAYS):
        d = _START + timedelta(i)
        if i % 90 == 0 or rng.random() < 1 / 120:
            growth = rng.gauss(0.003, 0.006)  # ~ +9%/month on average, -9% to +27%
        log_level += growth + rng.gauss(0, 0.01)
        log_level = min(max(log_level, math.log(50)), math.log(100000))
        v = math.exp(log_level) * profile[d.weekday()] * math.exp(rng.gauss(0, 0.08))
        if rng.random() < 0.01:
            v *= rng.uniform(2, 4)
        out[d] = round(v, 2)
    return out


def per_call_ms(calls: int = 300) -> float:
    """Mean ms per forecast_month call on distinct 90-day series (nothing cached)."""
    rng = random.Random(11)
    today = date(2025, 3, 15)
    inputs = []
    for _ in range(calls):
        base = rng.uniform(10, 1000)
        inputs.append(
            {
                today - timedelta(k): base * (0.5 if (today - timedelta(k)).weekday() >= 5 else 1)
                * rng.uniform(0.7, 1.3)
                for k in range(90)
            }
        )
    _fit.cache_clear()
    started = time.perf_counter()
    for series in inputs:
        forecast_month(series, today, 0.5)
    return (time.perf_counter() - started) / calls * 1000


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    paths = [Path(a) for a in args] or [DEFAULT]
    for path in paths:
        started = time.perf_counter()
        cases = run_backtest(load_series(path))
        elapsed = time.perf_counter() - started
        print(f"series: {path}")
        print(format_table(summarize(cases)))
        print(f"wall: {elapsed:.2f} s for {len(cases)} forecasts\n")
    if "--synthetic" in sys.argv:
        for name, make in (("rw_shifts", rw_shifts), ("trending", trending)):
            cases = [c for seed in SEEDS for c in run_backtest(make(seed))]
            print(f"series: synthetic {name}, seeds {', '.join(map(str, SEEDS))} pooled")
            print(format_table(summarize(cases)) + "\n")
    if "--timing" in sys.argv:
        print(f"forecast_month: {per_call_ms():.2f} ms per call (90 days of history, cold cache)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
