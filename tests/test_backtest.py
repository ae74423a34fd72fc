"""The backtest: input checks, the protocol's cases, the CLI, and the accuracy bar."""

from __future__ import annotations

import calendar
import csv
import json
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from bot.cli import main
from jobs.forecast.backtest import CHECKPOINTS, Case, SeriesError, load_series, run_backtest, summarize
from tests.conftest import SHARED, needs_shared

REPO = Path(__file__).resolve().parents[1]
WIKIPEDIA_R = SHARED / "data" / "forecast" / "wikipedia_R_daily.csv"
needs_series = needs_shared("data/forecast/wikipedia_R_daily.csv")


def write_series(path: Path, start: date, days: int, value=lambda i: 100.0 + i % 7) -> Path:
    lines = ["date,value"] + [f"{start + timedelta(i)},{value(i)}" for i in range(days)]
    path.write_text("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("2024-02-30,5", "bad date '2024-02-30'"),
        ("03/01/2024,5", "bad date '03/01/2024'"),
        ("2024-01-02,5", "duplicate date 2024-01-02 (first on line 3)"),
        ("2024-01-04,-3", "negative value -3"),
        ("2024-01-04,lots", "value 'lots' is not a number"),
        ("2024-01-04,nan", "value 'nan' is not a finite number"),
        ("2024-01-04,5,6", "expected 2 fields"),
    ],
)
def test_bad_rows_name_the_line_and_the_fault(tmp_path, capsys, row, message):
    path = tmp_path / "bad.csv"
    path.write_text(f"date,value\n2024-01-01,1\n2024-01-02,2\n{row}\n2024-01-05,3\n")
    with pytest.raises(SeriesError) as err:
        load_series(path)
    assert err.value.line == 4 and message in err.value.message

    assert main(["backtest", "--series", str(path)]) == 2
    out, errors = capsys.readouterr()
    assert out == ""
    assert f"line 4: {message}" in errors and "Traceback" not in errors


def test_too_little_history_is_a_clear_error(tmp_path, capsys):
    path = write_series(tmp_path / "short.csv", date(2024, 1, 1), 75)  # Jan 1 - Mar 15
    assert main(["backtest", "--series", str(path), "--json"]) == 2
    out, errors = capsys.readouterr()
    assert out == ""
    assert "no month to test" in errors and "at least 60 days of history" in errors


def test_missing_file_is_a_clear_error(tmp_path, capsys):
    assert main(["backtest", "--series", str(tmp_path / "nope.csv")]) == 2
    assert "cannot read" in capsys.readouterr().err


# --------------------------------------------------------------------------- protocol


def test_small_series_cases_follow_the_protocol(tmp_path):
    # Nov 1 .. Mar 31: Jan 1 is 61 days in, so Jan, Feb and Mar qualify; a gap drops Feb.
    path = write_series(tmp_path / "s.csv", date(2023, 11, 1), 152)
    series = load_series(path)
    del series[date(2024, 2, 10)]
    cases = run_backtest(series)
    assert [(c.month, c.checkpoint) for c in cases] == [
        (m, d) for m in ("2024-01", "2024-03") for d in CHECKPOINTS
    ]
    january = sum(series[date(2024, 1, d)] for d in range(1, 32))
    assert all(c.actual == pytest.approx(january) for c in cases[:5])


def test_summary_scores_each_method():
    cases = [
        Case("2024-01", 5, point=110, low=100, high=120, actual=100, run_rate=90, trailing_7=100),
        Case("2024-01", 10, point=100, low=90, high=95, actual=100, run_rate=80, trailing_7=150),
    ]
    s = summarize(cases)
    assert s.median_ape["forecast"] == {5: pytest.approx(0.1), 10: 0.0, "all": pytest.approx(0.05)}
    assert s.median_ape["run-rate"]["all"] == pytest.approx(0.15)
    assert s.median_ape["trailing-7"][10] == pytest.approx(0.5)
    assert s.coverage == 0.5 and s.cases == 2


def test_cli_json_runs_as_a_real_process(tmp_path):
    path = write_series(tmp_path / "s.csv", date(2023, 11, 1), 152)
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "backtest", "--series", str(path), "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [(r["month"], r["checkpoint"]) for r in rows] == [
        (m, d) for m in ("2024-01", "2024-02", "2024-03") for d in CHECKPOINTS
    ]
    assert all(set(r) == {"month", "checkpoint", "point", "low", "high", "actual"} for r in rows)
    assert all(r["low"] <= r["point"] <= r["high"] for r in rows)


def test_the_table_says_its_figures_are_median_ape(tmp_path, capsys):
    path = write_series(tmp_path / "s.csv", date(2023, 11, 1), 152)
    assert main(["backtest", "--series", str(path)]) == 0
    title, days, header, *rows = capsys.readouterr().out.splitlines()
    assert title.startswith("Median APE (median absolute percentage error; 0.0500 is 5%)")
    assert days == "made on day 5, 10, 15, 20 and 25 of the month (d5 … d25) and over all of them (all):"
    assert header.split() == ["method", "d5", "d10", "d15", "d20", "d25", "all"]
    assert [row.split()[0] for row in rows[:3]] == ["forecast", "run-rate", "trailing-7"]


# --------------------------------------------------------------------------- shared series


def test_tests_that_need_the_shared_folder_say_what_is_missing_and_where_it_goes():
    mark = needs_shared("data/no-such-series.csv")
    assert mark.args == (True,)
    reason = mark.kwargs["reason"]
    assert str(SHARED / "data" / "no-such-series.csv") in reason and "../shared" in reason
    assert "put or link that folder there" in reason


def protocol_months(path: Path) -> dict[str, float]:
    """Independently of jobs.forecast.backtest: months whose days are all present with >= 60 days
    of history before them, and their totals."""
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    values = {date.fromisoformat(r["date"]): float(r["value"]) for r in rows}
    first = min(values)
    months = {}
    for year in range(first.year, max(values).year + 1):
        for month in range(1, 13):
            start = date(year, month, 1)
            days = [date(year, month, d) for d in range(1, calendar.monthrange(year, month)[1] + 1)]
            if all(d in values for d in days) and (start - first).days >= 60:
                months[f"{year:04d}-{month:02d}"] = sum(values[d] for d in days)
    return months


@pytest.fixture(scope="module")
def shared_cases() -> list[Case]:
    return run_backtest(load_series(WIKIPEDIA_R))


@needs_series
def test_json_cases_match_the_protocol_on_the_shared_series(capsys):
    assert main(["backtest", "--series", str(WIKIPEDIA_R), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    months = protocol_months(WIKIPEDIA_R)
    assert len(rows) == len(months) * len(CHECKPOINTS)
    assert sorted({r["month"] for r in rows}) == sorted(months)
    for r in rows:
        assert r["actual"] == pytest.approx(months[r["month"]])
        assert r["low"] <= r["point"] <= r["high"]


@needs_series
def test_table_output_on_the_shared_series(capsys):
    assert main(["backtest", "--series", str(WIKIPEDIA_R)]) == 0
    out = capsys.readouterr().out
    for label in ("forecast", "run-rate", "trailing-7", "d5", "d25", "all", "coverage"):
        assert label in out


@needs_series
def test_interval_coverage_on_the_shared_series(shared_cases):
    assert 0.75 <= summarize(shared_cases).coverage <= 0.85


@needs_series
@pytest.mark.parametrize("checkpoint", list(CHECKPOINTS) + ["all"])
def test_forecaster_beats_both_baselines_on_the_shared_series(shared_cases, checkpoint):
    ape = summarize(shared_cases).median_ape
    assert ape["forecast"][checkpoint] < ape["run-rate"][checkpoint]
    assert ape["forecast"][checkpoint] < ape["trailing-7"][checkpoint]
