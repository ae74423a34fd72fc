"""Batch advice: a known nightly job is found and priced exactly; interactive traffic is not."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.orm import Session

from bot.cli import main
from db.models import to_nanos
from jobs.advice.batch import Savings, Usage, advise, pattern_signals, read_savings
from jobs.config.context import Context
from jobs.config.sections import Offline, PriceOverride
from jobs.config.settings import Settings
from pricing.costs import token_cost
from tests.buckets import add_buckets, usage_bucket

ZONE = ZoneInfo("America/New_York")  # US daylight saving starts on March 8, inside the window
NOW = datetime(2026, 3, 20, 15, 30, tzinfo=timezone.utc)
TODAY = NOW.astimezone(ZONE).date()
WINDOW_START = TODAY - timedelta(days=28)
BATCHED = "arcee-ai/maestro-reasoning"  # $0.90 in / $3.30 out per 1M; batch serves it
INTERACTIVE = "deepseek-ai/DeepSeek-V3"
NOT_ON_BATCH = "deepseek-ai/DeepSeek-R1"  # the operator's price says batch does not serve it
SETTINGS = dict(
    tz=ZONE.key,
    offline=Offline(features=["ticket-triage"]),
    prices=[PriceOverride(model=NOT_ON_BATCH, input=Decimal("3"), output=Decimal("7"), batch=False)],
)


def local(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=ZONE).astimezone(timezone.utc)


class Ledger:
    """Hourly buckets as the ledger stores them, costed at the catalog's price."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self.buckets: list[dict[str, Any]] = []
        self.window: dict[tuple[str, str], list[int]] = {}  # (model, feature) -> in, out tokens in the window
        self.tagged: dict[str, list[int]] = {}  # tags -> in, out tokens in the window

    def add(self, at: datetime, model: str, project: str, feature: str, requests: int, tokens_in: int,
            tokens_out: int, tags: str = "") -> None:
        price = self.context.catalog.price_of(model, at)
        tin, tout = requests * tokens_in, requests * tokens_out
        self.buckets.append(usage_bucket(
            at, model=model, project=project, feature=feature, api_key=f"key-{project}", environment="prod",
            tags=tags, input_tokens=tin, output_tokens=tout, requests=requests,
            cost_nanos=to_nanos(token_cost(price, tin, tout)) if price else None))
        if WINDOW_START <= at.astimezone(ZONE).date() < TODAY:
            for sums in (self.window.setdefault((model, feature), [0, 0]), self.tagged.setdefault(tags, [0, 0])):
                sums[0] += tin
                sums[1] += tout

    def save(self) -> None:
        add_buckets(self.context.sessions, self.buckets)


def build(context: Context) -> Ledger:
    """35 days: a nightly summarizer, daytime chat on two models, a nightly job on a model batch
    does not serve, and small daytime requests from a feature the operator marks offline."""
    ledger = Ledger(context)
    for n in range(35, -1, -1):
        day = TODAY - timedelta(days=n)
        weekday = day.weekday() < 5
        for hour in (3, 4, 5):  # 03:00-06:00 local, every night (02:00 is skipped on March 8)
            ledger.add(local(day, hour), BATCHED, "reports", "nightly-summaries", 40 + n % 3, 3000, 1200)
            ledger.add(local(day, hour), NOT_ON_BATCH, "reports", "nightly-reasoning", 20, 2500, 2000)
        for hour in range(9, 18):
            busy = (6 if weekday else 1) * (1 + (hour in (11, 14)))
            ledger.add(local(day, hour), BATCHED, "app", "chat", 30 * busy, 700, 180)
            ledger.add(local(day, hour), INTERACTIVE, "app", "chat", 50 * busy, 800, 200)
            if weekday:
                ledger.add(local(day, hour), BATCHED, "support", "ticket-triage", 25, 600, 40)
    ledger.save()
    return ledger


@pytest.fixture
def app_settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, **SETTINGS)


def expected_monthly_saving(context: Context, tokens_in: int, tokens_out: int) -> Decimal:
    """From the rates: the tokens at the serverless price minus at the batch discount, per 30.44 days."""
    price = context.catalog.price_of(BATCHED, TODAY)
    serverless = (tokens_in * price.input + tokens_out * price.output) / 1_000_000
    batch = (tokens_in * price.input * (100 - price.batch_discount) / 100
             + tokens_out * price.output * (100 - price.batch_discount) / 100) / 1_000_000
    return (serverless - batch) * Decimal("30.44") / 28


def test_finds_the_nightly_job_prices_it_exactly_and_ignores_interactive_traffic(context: Context) -> None:
    ledger = build(context)
    with context.sessions() as session:
        advice = advise(session, context.settings, context.catalog, now=NOW)

    found = {(c.model, c.feature): c for c in advice.candidates}
    assert set(found) == {(BATCHED, "nightly-summaries"), (BATCHED, "ticket-triage")}
    nightly = found[(BATCHED, "nightly-summaries")]
    assert (nightly.project, nightly.api_key) == ("reports", "key-reports")
    tokens_in, tokens_out = ledger.window[(BATCHED, "nightly-summaries")]
    assert nightly.window_tokens == tokens_in + tokens_out
    assert nightly.days_observed == 28
    assert nightly.monthly_saving == expected_monthly_saving(context, tokens_in, tokens_out)
    assert nightly.monthly_saving * 2 == nightly.monthly_cost  # 50% off
    assert nightly.monthly_tokens == int((Decimal(tokens_in + tokens_out) * Decimal("30.44") / 28).to_integral_value())
    why = " ".join(nightly.reasons)
    assert "off-hours" in why and "bursts" in why and "large requests" in why

    assert advice.candidates[0] is nightly  # ranked by saving
    assert advice.total_saving == sum((c.monthly_saving for c in advice.candidates), Decimal(0))
    assert any(NOT_ON_BATCH in note for note in advice.notes)


def test_a_dimension_marked_offline_is_suggested_on_that_mark_alone(context: Context) -> None:
    ledger = build(context)
    with context.sessions() as session:
        advice = advise(session, context.settings, context.catalog, now=NOW)
    triage = next(c for c in advice.candidates if c.feature == "ticket-triage")
    assert triage.reasons == ["feature 'ticket-triage' is marked offline in settings"]
    assert triage.monthly_saving == expected_monthly_saving(context, *ledger.window[(BATCHED, "ticket-triage")])

    unmarked = context.settings.model_copy(update={"offline": Offline()})
    with context.sessions() as session:
        advice = advise(session, unmarked, context.catalog, now=NOW)
    assert [c.feature for c in advice.candidates] == ["nightly-summaries"]


def test_a_model_batch_does_not_serve_is_never_suggested(context: Context) -> None:
    build(context)
    marked = context.settings.model_copy(update={"offline": Offline(projects=["reports"], features=["chat"])})
    with context.sessions() as session:
        advice = advise(session, marked, context.catalog, now=NOW)
    assert NOT_ON_BATCH not in {c.model for c in advice.candidates}
    assert {c.model for c in advice.candidates} == {BATCHED, INTERACTIVE}  # the marks do reach the others


def savings_of(session: Session, context: Context) -> Savings:
    """The ledger's batch savings as of NOW: what a budget's saving is read from."""
    return read_savings(session, context.settings, context.catalog, now=NOW)


def test_saving_in_a_budget_scope(context: Context) -> None:
    build(context)
    with context.sessions() as session:
        advice = advise(session, context.settings, context.catalog, now=NOW)
        savings = savings_of(session, context)
    nightly = next(c for c in advice.candidates if c.feature == "nightly-summaries")
    assert savings.saving({"project": "reports"}) == nightly.monthly_saving
    assert savings.saving({"model": BATCHED}) == advice.total_saving
    assert savings.saving({"project": "app"}) is None
    assert savings.saving({"mode": "batch"}) is None


def test_a_workload_split_by_tags_is_one_candidate_and_a_tag_scope_takes_its_part(context: Context) -> None:
    ledger = Ledger(context)
    for n in range(30, -1, -1):
        for hour, tags in ((3, "env=prod"), (4, "env=prod"), (5, "env=prod,shard=2")):
            ledger.add(local(TODAY - timedelta(days=n), hour), BATCHED, "reports", "nightly-summaries", 40, 3000,
                       1200, tags=tags)
    ledger.save()
    with context.sessions() as session:
        [candidate] = advise(session, context.settings, context.catalog, now=NOW).candidates
        savings = savings_of(session, context)
    assert candidate.monthly_saving == expected_monthly_saving(context, *ledger.window[(BATCHED, "nightly-summaries")])
    assert savings.saving({"tag": "env=prod"}) == candidate.monthly_saving
    assert savings.saving({"tag": "shard=2"}) == expected_monthly_saving(
        context, *ledger.tagged["env=prod,shard=2"])


def test_advise_command_prints_the_ranked_list_and_exact_json(database_url: str, context: Context,
                                                               monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    build(context)
    (tmp_path / "budget-guard.toml").write_text(
        f'tz = "{ZONE.key}"\n[offline]\nfeatures = ["ticket-triage"]\n'
        f'[[prices]]\nmodel = "{NOT_ON_BATCH}"\ninput = "3"\noutput = "7"\nbatch = false\n')
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setattr("bot.commands.advise.utc_now", lambda: NOW)
    with context.sessions() as session:
        advice = advise(session, context.settings, context.catalog, now=NOW)

    assert main(["advise"]) == 0
    out = capsys.readouterr().out
    assert out.index("nightly-summaries") < out.index("ticket-triage")
    assert "project=reports · feature=nightly-summaries · api_key=key-reports" in out
    assert "Total saving on batch: $" in out and "/month" in out

    assert main(["advise", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert Decimal(data["total_saving"]) == advice.total_saving
    assert [Decimal(c["monthly_saving"]) for c in data["candidates"]] == [c.monthly_saving for c in advice.candidates]
    assert data["candidates"][0]["rank"] == 1 and data["candidates"][0]["reasons"]


def test_advise_on_an_empty_ledger_says_so(database_url: str, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert main(["advise"]) == 1
    captured = capsys.readouterr()
    assert "no usage recorded in the last 28 days" in captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    assert main(["advise", "--days", "0"]) == 2
    assert "--days must be at least 1" in capsys.readouterr().err


# -- the signals, on usage built by hand ------------------------------------------------


def usage(per_day: int, peak: int, offhours: float, requests: int, output_share: float, days: int = 20) -> Usage:
    u = Usage()
    tokens = per_day * days
    u.output_tokens = int(tokens * output_share)
    u.input_tokens = tokens - u.output_tokens
    u.requests = requests * days
    u.offhours_tokens = int(tokens * offhours)
    u.days = {date(2026, 3, 1) + timedelta(days=n): [per_day, peak] for n in range(days)}
    return u


@pytest.mark.parametrize("name, u, signals", [
    ("flat 24/7 service", usage(24_000, 1_000, 0.64, 20, 0.2), 0),
    ("worldwide chat, mostly at night here", usage(24_000, 2_500, 0.9, 20, 0.2), 1),
    ("daytime chat with a lunch peak", usage(24_000, 3_000, 0.45, 20, 0.2), 0),
    ("one developer's hour a day", usage(24_000, 20_000, 0.1, 20, 0.2), 1),
    ("nightly cron of small classifications", usage(24_000, 12_000, 0.95, 20, 0.05), 2),
    ("daytime batch of long generations", usage(24_000, 12_000, 0.2, 8, 0.4), 2),
])
def test_one_signal_is_not_enough_two_are(name: str, u: Usage, signals: int) -> None:
    assert len(pattern_signals(u)) == signals, name
