"""The forecaster's candidates judged and combined: each level candidate's forecasts from past
origins beside what happened, the candidate with the smallest past error, and its mix with the
plain level, weighted by their past errors. Pure, no database.

Selection: from up to 52 past origins a week apart (the latest H + 7k days back, so each past
H-day horizon ends on today's weekday), each candidate forecasts the next H days, H being what
is left of this month; the one with the smallest mean absolute relative error is the model's
forecast.

Combination: the model's sum for the rest of the month is averaged with the plain
level's (the mean of the last 7 days, or of the days since a shift, with a day more
than 6 robust sigmas above their median capped: a runaway job is not carried
forward), weighted by the inverse of each one's mean absolute past error (Bates and
Granger). The days keep the model's weekday shape. The model's corrections (weekday
factors, clipping, the choice among candidates) each carry estimation noise; the
plain mean has none of it, and on real series the two err differently enough that
the mix beats either. Backtested on the shared series, three other real daily series
and two synthetic families, it beat trailing-7 at more checkpoints than the model
alone. Capping low days in the plain mean too gave a worse d15 on the shared series
(0.0266 against 0.0246) and no gain elsewhere.
Tried before and not kept: combining the candidates with each other (equal weights,
median/trimmed mean, inverse-error weights), a yearly adjustment from past errors a
year back, other error scores or horizons near H, more candidates.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from statistics import fmean

from jobs.forecast.daily_model import CANDIDATES, TREND_DAYS, Fit, candidate_path, origin_fit

CALIBRATION_WEEKS = 52  # past origins a week apart, up to a year back
MIN_ORIGIN_HISTORY = 14
PLAIN_WEIGHT = 0.5  # the plain level's weight before there are past errors to set it


def _combined(predicted: float, plain: float, weight: float) -> float:
    """A candidate's forecast of a sum combined with the plain level's; a candidate that
    expects nothing (a weekday-only job over a weekend, a model that stopped) keeps 0."""
    return predicted if predicted <= 0 else (1 - weight) * predicted + weight * plain


def combined_path(
    fit: Fit, candidate: int, origin_weekday: int, horizon: int, weight: float
) -> list[float]:
    """What is forecast: the candidate's path, scaled so that its sum is the combined sum
    (so the days keep the candidate's weekday shape)."""
    path = candidate_path(fit, candidate, origin_weekday, horizon)
    total = sum(path)
    if total <= 0:
        return path
    scale = _combined(total, fit.plain * horizon, weight) / total
    return [p * scale for p in path]


def _relative_error(actual: float, predicted: float) -> float | None:
    if predicted > 0:
        return (actual - predicted) / predicted
    return 0.0 if actual == 0 else None



@dataclass(frozen=True)
class Outcome:
    """What happened after one past origin, beside what was forecast for it."""

    actual: float  # sum of the horizon's days that are present
    predicted: tuple[float, ...]  # per candidate, over the same days
    plain: float  # the plain level over the same days


def past_outcomes(
    x: list[float | None], weekday0: int, origin: int, horizon: int, first: int
) -> list[Outcome]:
    """Horizon-day sums from past origins horizon + 7k days before `origin`, so each past
    horizon ends on the weekday of `origin` and no later than it. Missing days count in
    neither the actual nor the forecasts."""
    outcomes = []
    reach = min(horizon, TREND_DAYS)
    for k in range(CALIBRATION_WEEKS):
        t = origin - horizon - 7 * k
        if t - first < MIN_ORIGIN_HISTORY:
            break
        fit = origin_fit(x, t, weekday0)
        if fit is None:
            continue
        actual = s0 = s1 = 0.0
        present = 0
        for j in range(1, horizon + 1):
            v = x[t + j]
            if v is not None:
                fj = fit.factors[(weekday0 + t + j) % 7]
                actual += v
                s0 += fj
                s1 += fj * min(j, TREND_DAYS)
                present += 1
        predicted = []
        for c, (level, slope) in enumerate(zip(fit.levels, fit.slopes, strict=True)):
            if level + slope * reach >= 0:
                predicted.append(level * s0 + slope * s1)
            else:  # the trend would cross zero: walk the clamped path
                path = candidate_path(fit, c, (weekday0 + t) % 7, horizon)
                predicted.append(sum(p for j, p in enumerate(path, 1) if x[t + j] is not None))
        outcomes.append(Outcome(actual, tuple(predicted), fit.plain * present))
    return outcomes


def _errors(outcomes: list[Outcome], forecast: Callable[[Outcome], float]) -> list[float]:
    """Relative errors (actual - forecast) / forecast; a forecast of 0 that came true is 0."""
    errors = (_relative_error(o.actual, forecast(o)) for o in outcomes)
    return [e for e in errors if e is not None]


def choose(outcomes: list[Outcome]) -> tuple[int, float, list[float]]:
    """The candidate with the smallest mean absolute past error; the plain level's weight,
    the candidate's share of the two's mean absolute errors (each weighted by the other's
    inverse error); and the combined forecast's past errors, which set the interval."""
    if not outcomes:
        return 0, PLAIN_WEIGHT, []
    scores = []
    for c in range(len(CANDIDATES)):
        errors = _errors(outcomes, lambda o: o.predicted[c])
        scores.append(fmean(abs(e) for e in errors) if errors else math.inf)
    best = min(range(len(CANDIDATES)), key=scores.__getitem__)
    plain = _errors(outcomes, lambda o: o.plain)
    model_error, plain_error = scores[best], fmean(abs(e) for e in plain) if plain else math.inf
    if model_error == 0 or math.isinf(model_error) or math.isinf(plain_error):
        weight = float(model_error > plain_error)
    else:
        weight = model_error / (model_error + plain_error)
    residuals = _errors(outcomes, lambda o: _combined(o.predicted[best], o.plain, weight))
    return best, weight, residuals
