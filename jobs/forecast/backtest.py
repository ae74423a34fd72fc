"""Backtest the month-end forecaster against the run-rate and trailing-7 baselines.

Protocol (shared/data/forecast/README.md): every calendar month whose days are all
present and that has at least 60 days of history before it; at checkpoints d = 5, 10,
15, 20, 25 the forecaster sees every day up to and including day d (day d complete) and
predicts the month's total with an 80% interval. Scores: median absolute percentage
error per checkpoint and over all cases, and the share of actuals inside the interval.
"""

from __future__ import annotations

import calendar
import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from statistics import median

from jobs.forecast.forecaster import forecast_month, run_rate, trailing_7

CHECKPOINTS = (5, 10, 15, 20, 25)
HISTORY_DAYS = 60
METHODS = ("forecast", "run-rate", "trailing-7")


class SeriesError(ValueError):
    """Bad input series; `line` is the 1-based CSV line at fault (None: the whole file)."""

    def __init__(self, line: int | None, message: str) -> None:
        self.line = line
        self.message = message
        super().__init__(f"line {line}: {message}" if line is not None else message)


@dataclass(frozen=True)
class Case:
    """One (month, checkpoint) forecast with its outcome and the baselines' points."""

    month: str  # "YYYY-MM"
    checkpoint: int
    point: float
    low: float
    high: float
    actual: float
    run_rate: float
    trailing_7: float

    def points(self) -> dict[str, float]:
        return {"forecast": self.point, "run-rate": self.run_rate, "trailing-7": self.trailing_7}


@dataclass(frozen=True)
class Summary:
    """Median APE per method and checkpoint (key "all" over every case), and coverage."""

    median_ape: dict[str, dict[int | str, float]]
    coverage: float
    cases: int


def load_series(path: str | Path) -> dict[date, float]:
    """Read a `date,value` CSV (a header line is optional) into {date: value}.

    Raises SeriesError naming the line for a bad date, a duplicate date, a value that is
    not a finite number, a negative value, or a row without exactly two fields.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise SeriesError(None, f"cannot read {path}: {exc}") from None
    series: dict[date, float] = {}
    first_line: dict[date, int] = {}
    for number, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != 2:
            raise SeriesError(number, f"expected 2 fields 'date,value', got {len(row)}")
        raw_date, raw_value = (cell.strip() for cell in row)
        if number == 1 and _is_header(raw_date, raw_value):
            continue
        try:
            day = date.fromisoformat(raw_date)
        except ValueError:
            raise SeriesError(number, f"bad date {raw_date!r}: expected YYYY-MM-DD") from None
        try:
            value = float(raw_value)
        except ValueError:
            raise SeriesError(number, f"value {raw_value!r} is not a number") from None
        if not math.isfinite(value):
            raise SeriesError(number, f"value {raw_value!r} is not a finite number")
        if value < 0:
            raise SeriesError(number, f"negative value {raw_value} on {day.isoformat()}")
        if day in series:
            raise SeriesError(
                number, f"duplicate date {day.isoformat()} (first on line {first_line[day]})"
            )
        series[day] = value
        first_line[day] = number
    if not series:
        raise SeriesError(None, "no data rows: expected lines of 'date,value'")
    return series


def _is_header(first: str, second: str) -> bool:
    """A first line like 'date,value' (neither a date nor a number) is a header."""
    try:
        date.fromisoformat(first)
        return False
    except ValueError:
        pass
    try:
        float(second)
        return False
    except ValueError:
        return True


def eligible_months(series: Mapping[date, float], history_days: int = HISTORY_DAYS) -> list[date]:
    """First days of the months that are complete and have `history_days` of history."""
    first, last = min(series), max(series)
    months = []
    year, month = first.year, first.month
    while (year, month) <= (last.year, last.month):
        start = date(year, month, 1)
        days = calendar.monthrange(year, month)[1]
        complete = all(start + timedelta(i) in series for i in range(days))
        if complete and (start - first).days >= history_days:
            months.append(start)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def run_backtest(
    series: Mapping[date, float], checkpoints: Sequence[int] = CHECKPOINTS
) -> list[Case]:
    """Run the protocol over `series`; raises SeriesError when no month qualifies."""
    months = eligible_months(series)
    if not months:
        first, last = min(series), max(series)
        raise SeriesError(
            None,
            f"no month to test: the series runs {first} to {last} "
            f"({(last - first).days + 1} days) and needs a month with every day present "
            f"and at least {HISTORY_DAYS} days of history before it",
        )
    ordered = sorted(series.items())
    cases = []
    for start in months:
        days_in_month = calendar.monthrange(start.year, start.month)[1]
        actual = sum(series[start + timedelta(i)] for i in range(days_in_month))
        for d in checkpoints:
            today = start.replace(day=d)
            seen = {day: v for day, v in ordered if day <= today}
            forecast = forecast_month(seen, today, day_fraction=1.0)
            cases.append(
                Case(
                    month=f"{start.year:04d}-{start.month:02d}",
                    checkpoint=d,
                    point=forecast.point,
                    low=forecast.low,
                    high=forecast.high,
                    actual=actual,
                    run_rate=run_rate(forecast.month_to_date, d, days_in_month),
                    trailing_7=trailing_7(seen, today),
                )
            )
    return cases


def ape(point: float, actual: float) -> float:
    """|point - actual| / actual; 0 when both are 0, infinite when only actual is."""
    if actual == 0:
        return 0.0 if point == 0 else math.inf
    return abs(point - actual) / actual


def summarize(cases: Sequence[Case]) -> Summary:
    """Median APE per method, per checkpoint and over all cases; 80% interval coverage."""
    checkpoints = sorted({c.checkpoint for c in cases})
    table: dict[str, dict[int | str, float]] = {}
    for method in METHODS:
        row: dict[int | str, float] = {}
        for d in checkpoints:
            row[d] = median(ape(c.points()[method], c.actual) for c in cases if c.checkpoint == d)
        row["all"] = median(ape(c.points()[method], c.actual) for c in cases)
        table[method] = row
    covered = sum(c.low <= c.actual <= c.high for c in cases)
    return Summary(median_ape=table, coverage=covered / len(cases), cases=len(cases))


def format_table(summary: Summary) -> str:
    """The summary as a fixed-width text table, under a line that says what its figures are."""
    columns = [k for k in summary.median_ape["forecast"]]
    days = [k for k in columns if isinstance(k, int)]
    title = ("Median APE (median absolute percentage error; 0.0500 is 5%) of each method's month-end forecast,\n"
             f"made on day {', '.join(str(d) for d in days[:-1])} and {days[-1]} of the month "
             f"(d{days[0]} … d{days[-1]}) and over all of them (all):")
    head = f"{'method':<12}" + "".join(
        f"{('d' + str(k)) if isinstance(k, int) else k:>8}" for k in columns
    )
    lines = [title, head]
    for method, row in summary.median_ape.items():
        lines.append(f"{method:<12}" + "".join(f"{row[k]:>8.4f}" for k in columns))
    lines.append(f"80% interval coverage: {summary.coverage:.3f} over {summary.cases} cases")
    return "\n".join(lines)
