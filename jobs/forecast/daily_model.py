"""The daily model of the month-end forecaster: what it knows at one origin day, fitted on the
days up to it, and each level candidate's path over the days after it. Pure, no database.

1. Weekday profile: for each of the last 8 weeks, each day's share of its week's mean;
   the median share per weekday, normalised to average 1, then shrunk toward flat by as
   much as sampling noise could explain (positive-part James-Stein). Under two usable
   weeks, or a pattern no stronger than noise: no weekday pattern.
2. Spikes: values are deseasonalised (value / weekday factor); a value more than 3 robust
   sigmas (from day-to-day differences, so level shifts do not inflate it; floored at 5%
   of the level) from the median of the last 7 days is clipped before it enters a level,
   so a one-day spike is not extrapolated.
3. Level shifts: when the last 3 or more days all sit beyond that band, on the same side,
   of the days before them, the level restarts from those days alone (a step change, a
   model that started, or one that stopped).
4. Level candidates, all ratio estimators sum(clipped value) / sum(weekday factor): the
   last 7 days, the last 14 days, exponentially weighted days (half-life 3 days), and the
   7-day level plus its change from the week before, extrapolated for at most 14 days;
   `jobs.forecast.combination` picks among them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from statistics import fmean

PROFILE_WEEKS = 8
SCALE_DAYS = 28
SPIKE_SIGMAS = 3.0
SCALE_FLOOR = 0.05
SHIFT_RUN = 3
TREND_DAYS = 14  # a trend is extrapolated for at most this many days, then held flat
PLAIN_SIGMAS = 6.0  # the plain level caps a day this many robust sigmas above its week's median
# (kind, parameter): kind "window" = last p days; "halflife" = weights 0.5**(age/p);
# "trend" = last p days plus the change from the p days before, capped at TREND_DAYS.
CANDIDATES: tuple[tuple[str, int], ...] = (
    ("window", 7),
    ("window", 14),
    ("halflife", 3),
    ("trend", 7),
)
FIT_DAYS = PROFILE_WEEKS * 7  # a fit at day t reads days t-55..t and nothing else


@dataclass(frozen=True)
class Fit:
    """What the model knows at one origin day: weekday factors and candidate levels."""

    factors: tuple[float, ...]  # index = weekday (Mon=0)
    levels: tuple[float, ...]  # one per candidate
    slopes: tuple[float, ...]  # per day; non-zero only for the trend candidate
    shift_days: int  # >0: the level restarted this many days ago
    shift_from: float  # the level before that restart
    clipped: tuple[int, ...]  # offsets back from the origin (0 = origin) of clipped spikes
    scale: float  # robust day-to-day sigma of deseasonalised values
    plain: float  # plain mean of the last 7 days (or the days since a shift), wild days capped


def _median(values: list[float]) -> float:
    """statistics.median of a non-empty list, without its overhead (this is the hot path)."""
    s = sorted(values)
    m = len(s) // 2
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2


def _weekday_factors(window: tuple[float | None, ...], last_weekday: int) -> tuple[float, ...]:
    n = len(window)
    shares: list[list[float]] = [[] for _ in range(7)]
    blocks = 0
    for b in range(PROFILE_WEEKS):
        hi = n - 1 - 7 * b
        lo = hi - 6
        if lo < 0:
            break
        days = [(i, window[i]) for i in range(lo, hi + 1) if window[i] is not None]
        if len(days) < 5:
            continue
        mean = fmean([v for _, v in days])
        if mean <= 0:
            continue
        blocks += 1
        for i, v in days:
            shares[(last_weekday - (n - 1 - i)) % 7].append(v / mean)
    if blocks < 2:
        return (1.0,) * 7
    raw = [_median(s) if s else 1.0 for s in shares]
    total = sum(raw) / 7
    if total <= 0:
        return (1.0,) * 7
    raw = [v / total for v in raw]
    # Shrink toward flat by how much of the factors' spread their own sampling noise could
    # explain (positive-part James-Stein): a noisy series gets a weak or no weekday pattern.
    centres = [_median(s) if s else 0.0 for s in shares]
    noise = fmean(
        [
            (math.pi / 2) * (1.4826 * _median([abs(r - c) for r in s])) ** 2 / len(s)
            for s, c in zip(shares, centres, strict=True)
            if s
        ]
    )
    spread = fmean((v - 1) ** 2 for v in raw)
    keep = max(0.0, 1 - noise / spread) if spread > 0 else 0.0
    return tuple(1 + keep * (v - 1) for v in raw)


@lru_cache(maxsize=8192)
def _fit(window: tuple[float | None, ...], last_weekday: int) -> Fit | None:
    """Fit the model on `window` (oldest first; its last entry is the origin day).

    Memoised on content: the backtest and forecast_total refit the same past origins many
    times, and the result depends on nothing but these values and the weekday.
    """
    n = len(window)
    f = _weekday_factors(window, last_weekday)

    fac = [f[(last_weekday - (n - 1 - i)) % 7] for i in range(n)]
    z = [
        (i, v / fac[i])
        for i in range(max(0, n - SCALE_DAYS), n)
        if (v := window[i]) is not None and fac[i] >= 0.05
    ]
    if not z:
        return None
    diffs = [abs(b - a) for (i, a), (j, b) in zip(z, z[1:], strict=False) if j - i == 1]
    scale = 1.4826 * _median(diffs) / math.sqrt(2) if diffs else 0.0
    recent = [v for i, v in z if i >= n - 7] or [z[-1][1]]
    centre = _median(recent)
    band = _band(scale, centre)
    clip = band > 0  # zero: mostly-zero days with no spread (intermittent use), no clipping

    shift = _shift_run(z, scale)
    plain = _plain_level(window[-min(shift or 7, 7) :], scale)
    if shift:
        level = _median([v for _, v in z[-shift:]])
        before = _median([v for _, v in z[-shift - 14 : -shift]])
        k = len(CANDIDATES)
        return Fit(f, (level,) * k, (0.0,) * k, shift, before, (), scale, plain)

    lo, hi = centre - band, centre + band
    clipped = tuple(n - 1 - i for i, v in z if i >= n - 14 and not lo <= v <= hi)

    # Each day's value with a spike clipped to the band (scaled by its weekday factor).
    capped = [
        None if v is None else (min(hi * fi, max(lo * fi, v)) if clip else v)
        for v, fi in zip(window, fac, strict=True)
    ]

    def ratio_level(first: int, last: int, halflife: float = 0.0) -> float | None:
        num = den = 0.0
        for i in range(max(0, first), last + 1):
            v = capped[i]
            if v is None:
                continue
            if halflife:
                w = 0.5 ** ((n - 1 - i) / halflife)
                num += w * v
                den += w * fac[i]
            else:
                num += v
                den += fac[i]
        return num / den if den > 0 else None

    levels, slopes = [], []
    for kind, p in CANDIDATES:
        if kind == "halflife":
            lvl = ratio_level(n - SCALE_DAYS, n - 1, p)
        else:
            lvl = ratio_level(n - p, n - 1)
        lvl = centre if lvl is None else lvl
        slope = 0.0
        if kind == "trend":
            before = ratio_level(n - 2 * p, n - 1 - p)
            if before is not None:
                slope = (lvl - before) / p
                lvl += slope * (p - 1) / 2  # the window's mean sits (p-1)/2 days back
        levels.append(lvl)
        slopes.append(slope)
    return Fit(f, tuple(levels), tuple(slopes), 0, 0.0, clipped, scale, plain)


def _plain_level(days: tuple[float | None, ...], scale: float) -> float:
    """Mean of the days present, none counted above PLAIN_SIGMAS robust sigmas over their
    median: no weekday pattern, only a runaway day kept from the mean."""
    values = [v for v in days if v is not None]
    if not values:
        return 0.0
    centre = _median(values)
    band = PLAIN_SIGMAS * max(scale, SCALE_FLOOR * centre)
    return fmean([min(centre + band, v) for v in values])


def _band(scale: float, around: float) -> float:
    """How far from `around` a value must be to count as a spike or a shift: SPIKE_SIGMAS
    robust sigmas, the sigma floored at SCALE_FLOOR of the level (smooth series)."""
    return SPIKE_SIGMAS * max(scale, SCALE_FLOOR * abs(around))


def _shift_run(z: list[tuple[int, float]], scale: float) -> int:
    """Length of the longest run of latest days that all sit beyond the band around the
    median of the up-to-14 days before the run, on the same side; 0 under SHIFT_RUN days."""
    values = [v for _, v in z]
    longest = min(21, len(z) - 5)
    if longest < SHIFT_RUN:
        return 0
    # lowest[k], highest[k]: extremes of the last k values (the run of length k)
    lowest, highest = [math.inf] * (longest + 1), [-math.inf] * (longest + 1)
    for k in range(1, longest + 1):
        v = values[-k]
        lowest[k], highest[k] = min(lowest[k - 1], v), max(highest[k - 1], v)
    for k in range(longest, SHIFT_RUN - 1, -1):
        ref = _median(values[-k - 14 : -k])
        band = _band(scale, ref)
        if lowest[k] > ref + band or highest[k] < ref - band:
            return k
    return 0


def candidate_path(fit: Fit, candidate: int, origin_weekday: int, horizon: int) -> list[float]:
    """The candidate's expected value for each of the `horizon` days after the origin."""
    level, slope = fit.levels[candidate], fit.slopes[candidate]
    return [
        max(0.0, level + slope * min(j, TREND_DAYS)) * fit.factors[(origin_weekday + j) % 7]
        for j in range(1, horizon + 1)
    ]



def origin_fit(x: list[float | None], t: int, weekday0: int) -> Fit | None:
    return _fit(tuple(x[max(0, t - FIT_DAYS + 1) : t + 1]), (weekday0 + t) % 7)
