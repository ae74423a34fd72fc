"""`budget-guard forecast`: month-to-date, month-end forecast and interval per group, from the ledger."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from bot.cli import main
from db.models import from_nanos, to_nanos
from db.rollups import DailyRow
from jobs.config.catalog import build_catalog
from jobs.config.context import Context
from jobs.config.sections import PriceOverride
from jobs.config.settings import Settings
from jobs.forecast.projection import project
from pricing.costs import token_cost
from pricing.money import usd
from tests.buckets import add_buckets, usage_bucket

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=timezone.utc)
TODAY = NOW.date()
MAESTRO = "arcee-ai/maestro-reasoning"  # $0.90 in / $3.30 out per 1M
DEEPSEEK = "deepseek-ai/DeepSeek-V3"  # $1.25 in and out
UNKNOWN = "acme/house-model-7b"  # no price anywhere: kept, shown as unpriced


@pytest.fixture
def cli(database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """The CLI pointed at the test database at a fixed moment; yields the TOML file to write."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setattr("bot.commands.forecast.utc_now", lambda: NOW)
    config = tmp_path / "budget-guard.toml"
    config.write_text('tz = "UTC"\n')
    yield config


def record(database_url: str, days: int = 70, *, unpriced: bool = True) -> Decimal:
    """Daily buckets for two priced models in two projects (weekday pattern) and an unpriced model;
    returns the month-to-date cost."""
    context = Context.open(Settings(database_url=database_url))
    buckets, month_to_date = [], Decimal(0)
    for n in range(days - 1, -1, -1):
        day = TODAY - timedelta(days=n)
        scale = 1 if day.weekday() < 5 else 0.4
        for model, team, requests in ((MAESTRO, "search", 400), (MAESTRO, "app", 150), (DEEPSEEK, "app", 300)):
            tin, tout = int(requests * scale) * 2000, int(requests * scale) * 500
            cost = to_nanos(token_cost(context.catalog.price_of(model, day), tin, tout))
            buckets.append(usage_bucket(
                datetime(day.year, day.month, day.day, 10, tzinfo=timezone.utc), model=model, project=team,
                feature="chat", input_tokens=tin, output_tokens=tout, requests=int(requests * scale), cost_nanos=cost))
            if day >= TODAY.replace(day=1):
                month_to_date += from_nanos(cost)
        if unpriced:
            buckets.append(usage_bucket(
                datetime(day.year, day.month, day.day, 11, tzinfo=timezone.utc), model=UNKNOWN, project="search",
                feature="chat", input_tokens=50_000, output_tokens=10_000, requests=20, cost_nanos=None))
    add_buckets(context.sessions, buckets)
    context.close()
    return month_to_date


def forecast_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["forecast", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def by_key(data: dict) -> dict[str, dict]:
    return {g["key"]: g for g in data["groups"]}


@pytest.mark.parametrize("by", ["model", "project", "feature"])
def test_total_is_the_sum_of_its_parts(database_url: str, cli: Path, capsys: pytest.CaptureFixture[str],
                                       by: str) -> None:
    month_to_date = record(database_url)
    data = forecast_json(capsys, "--by", by)
    total, groups = data["total"], data["groups"]
    assert data["month"] == "2026-03" and data["by"] == by
    assert Decimal(total["month_to_date"]) == month_to_date
    assert sum(Decimal(g["month_to_date"]) for g in groups) == month_to_date
    assert sum(Decimal(g["forecast"]) for g in groups) == Decimal(total["forecast"])
    for part in [total, *groups]:
        assert Decimal(part["low"]) <= Decimal(part["forecast"]) <= Decimal(part["high"])
        assert Decimal(part["month_to_date"]) <= Decimal(part["low"])
    assert Decimal(total["forecast"]) > month_to_date  # half the month is still to come
    assert total["unpriced_tokens"] == 15 * 60_000  # March 1-15 of the unpriced model, never as $0


def test_table_lists_each_group_then_the_total(database_url: str, cli: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    record(database_url)
    data = forecast_json(capsys)
    assert main(["forecast"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Forecast for March 2026 (UTC), as of 2026-03-15 12:00")
    header = next(line for line in lines if line.startswith("model"))
    assert all(column in header for column in ("month-to-date", "forecast", "low (80%)", "high (80%)", "unpriced"))
    rows = {line.split()[0]: line for line in lines if line.split() and line.split()[0] in
            {MAESTRO, DEEPSEEK, UNKNOWN, "total"}}
    assert set(rows) == {MAESTRO, DEEPSEEK, UNKNOWN, "total"}
    assert lines.index(rows[MAESTRO]) < lines.index(rows[DEEPSEEK]) < lines.index(rows["total"])  # largest first
    assert "900,000" in rows[UNKNOWN] and "no known price" in lines[-1]
    maestro = by_key(data)[MAESTRO]
    assert usd(Decimal(maestro["forecast"])) in rows[MAESTRO]


def test_a_mid_month_price_change_moves_the_forecast_the_right_way(database_url: str, cli: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    record(database_url, unpriced=False)
    before = by_key(forecast_json(capsys))

    def with_price(input_rate: str, output_rate: str, start: date) -> dict[str, dict]:
        cli.write_text(f'tz = "UTC"\n[[prices]]\nmodel = "{MAESTRO}"\ninput = "{input_rate}"\n'
                       f'output = "{output_rate}"\nstart = {start.isoformat()}\n')
        return by_key(forecast_json(capsys))

    dearer = with_price("1.80", "6.60", date(2026, 3, 20))
    cheaper = with_price("0.45", "1.65", date(2026, 3, 20))
    next_month = with_price("1.80", "6.60", date(2026, 4, 1))
    for after in (dearer, cheaper, next_month):
        assert after[MAESTRO]["month_to_date"] == before[MAESTRO]["month_to_date"]  # history keeps its price
        assert after[DEEPSEEK] == before[DEEPSEEK]
    assert Decimal(cheaper[MAESTRO]["forecast"]) < Decimal(before[MAESTRO]["forecast"]) \
        < Decimal(dearer[MAESTRO]["forecast"])
    assert next_month[MAESTRO]["forecast"] == before[MAESTRO]["forecast"]
    # Only the days from the 20th are repriced: doubling them adds what they were expected to cost.
    rest_before = Decimal(before[MAESTRO]["forecast"]) - Decimal(before[MAESTRO]["month_to_date"])
    added = Decimal(dearer[MAESTRO]["forecast"]) - Decimal(before[MAESTRO]["forecast"])
    assert 0 < added < rest_before


def test_a_single_day_of_usage_forecasts_without_nan(database_url: str, cli: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    record(database_url, days=1, unpriced=False)
    data = forecast_json(capsys)
    assert "nan" not in json.dumps(data).lower()
    assert Decimal(data["total"]["forecast"]) >= Decimal(data["total"]["month_to_date"]) > 0
    assert data["total"]["note"]


def test_an_empty_ledger_is_a_clear_message(cli: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["forecast"]) == 1
    captured = capsys.readouterr()
    assert "no usage recorded" in captured.err and "nothing to forecast" in captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    assert main(["forecast", "--json"]) == 1
    assert capsys.readouterr().out == ""


# -- the projection under the command: days without usage are zero, not missing -----------


def daily_row(day: date, tokens: int, model: str = DEEPSEEK) -> DailyRow:
    price = CATALOG.price_of(model, day)
    return DailyRow(day, model, "serverless", "app", "chat", "", "", tokens, 0, 0, tokens // 1000, 0,
                    to_nanos(token_cost(price, tokens, 0)), 0)


CATALOG = build_catalog(Settings())
HISTORY = [TODAY - timedelta(days=n) for n in range(70, -1, -1)]


def test_a_weekday_only_job_is_not_forecast_to_run_at_weekends() -> None:
    rows = [daily_row(day, 1_000_000) for day in HISTORY if day.weekday() < 5]
    total, _ = project(rows, today=TODAY, day_fraction=1.0, catalog=CATALOG)
    weekend = [amount for day, amount in total.remaining if day.weekday() >= 5]
    weekday = [amount for day, amount in total.remaining if day.weekday() < 5]
    assert weekend and all(amount == 0 for amount in weekend)
    assert all(amount == pytest.approx(Decimal("1.25"), rel=Decimal("0.05")) for amount in weekday)


def test_a_model_that_stopped_is_not_forecast_to_go_on() -> None:
    rows = [daily_row(day, 1_000_000) for day in HISTORY if day <= TODAY - timedelta(days=8)]
    total, _ = project(rows, today=TODAY, day_fraction=1.0, catalog=CATALOG)
    assert total.point == total.month_to_date == Decimal("1.25") * 7  # March 1-7, then nothing


def test_the_interval_scales_with_a_repriced_rest() -> None:
    rows = [daily_row(day, 1_000_000 + 200_000 * (day.day % 3)) for day in HISTORY]
    plain, _ = project(rows, today=TODAY, day_fraction=1.0, catalog=CATALOG)
    dearer_catalog = build_catalog(Settings(prices=[PriceOverride(
        model=DEEPSEEK, input=Decimal("2.50"), output=Decimal("2.50"), start=TODAY + timedelta(days=1))]))
    dearer, _ = project(rows, today=TODAY, day_fraction=1.0, catalog=dearer_catalog)
    assert dearer.month_to_date == plain.month_to_date
    assert dearer.point - dearer.month_to_date == pytest.approx(2 * (plain.point - plain.month_to_date))
    assert dearer.high - dearer.point == pytest.approx(2 * (plain.high - plain.point))
    assert dearer.point - dearer.low == pytest.approx(2 * (plain.point - plain.low))
