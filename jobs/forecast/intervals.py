"""The forecaster's 80% interval: split-conformal quantiles of the combined forecast's past
relative errors, widened to a stated prior while there are few of them. Pure, no database.

Under 8 past origins it is widened to a stated prior: +-50% of what is left at 7 days of
history, shrinking as 1/sqrt(days), or wider if the days are noisy.
"""

from __future__ import annotations

import math

from jobs.forecast.daily_model import Fit

MIN_RESIDUALS = 8
INTERVAL = 0.80
_Z_80 = 1.2816


def conformal_bounds(errors: list[float]) -> tuple[float, float]:
    """The 10% and 90% split-conformal quantiles of past relative errors."""
    e = sorted(errors)
    n = len(e)
    tail = (1 - INTERVAL) / 2
    lo = e[max(0, math.floor(tail * (n + 1)) - 1)]
    hi = e[min(n - 1, math.ceil((1 - tail) * (n + 1)) - 1)]
    return lo, hi


def prior_bounds(fit: Fit | None, history_days: int, horizon: int) -> tuple[float, float]:
    """A stated prior for short histories: +-0.5*sqrt(7/days), or wider if the days seen are
    noisy (80% normal band of their day-to-day scale, level and days alike uncertain)."""
    width = 0.5 * math.sqrt(7 / max(history_days, 1))
    if fit is not None and fit.levels[0] > 0 and fit.scale > 0:
        cv = fit.scale / fit.levels[0]
        width = max(width, _Z_80 * cv * math.sqrt(1 / max(horizon, 1) + 1 / max(history_days, 1)))
    return -min(width, 1.0), width
