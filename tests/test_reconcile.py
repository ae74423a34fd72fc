"""Computed vs provider-billed: the ledger against OpenAI's costs API (the fake answers as the spec
says) and against LiteLLM's response_cost; a seeded 5% price difference is flagged once a month
with its likely cause, an exact match stays quiet, and the CLI prints the table."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.cli import main
from bot.views.alerts import alert_message
from db.engine import transaction
from db.models import Alert, OutboxMessage
from jobs.budgets.reconcile import DayComparison, _likely_cause, check_drift, reconcile
from jobs.config.context import Context
from jobs.config.sections import Source
from jobs.config.settings import Settings
from jobs.runtime.outbox import send_pending
from jobs.runtime.scheduler import outbox_client, run_claimed
from jobs.schedule import scheduled_jobs
from jobs.usage.ingest import apply_records
from jobs.usage.litellm_spend import parse_spend_logs
from jobs.usage.pull import pull_sources
from jobs.usage.sources import RetryPolicy
from tests.fakes.openai_usage import FakeOpenAIUsage, UsageEvent
from tests.fakes.slack_api import FakeSlack
from tests.harness import BOT_TOKEN, SIGNING_SECRET
from tests.test_litellm_ingest import payload

NOW = datetime(2026, 11, 20, 6, 0, tzinfo=timezone.utc)  # the check of the 20th: Nov 1-19 are whole days
MINI = "gpt-4o-mini"  # $0.15 in, $0.075 cached, $0.60 out per 1M tokens (genai-prices)
COUNTED = "openai/gpt-4o-mini"  # the catalog model the ledger and the bill's line items resolve it to
CATALOG_MINI = (Decimal("0.15"), Decimal("0.075"), Decimal("0.60"))
RETRY = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02, max_total_wait=1, sleep=lambda s: None)


def events(model: str = MINI, days: int = 5, first: int = 14) -> list[UsageEvent]:
    """Four calls a day from Nov 14: $1.23 a day at the catalog's price."""
    start = datetime(2026, 11, first, tzinfo=timezone.utc)
    return [UsageEvent(start + timedelta(days=d, hours=3 + 5 * n), model, input_tokens=1_500_000,
                       input_cached_tokens=500_000, output_tokens=200_000, project_id="proj_web")
            for d in range(days) for n in range(4)]


@pytest.fixture
def openai_api() -> Iterator[FakeOpenAIUsage]:
    with FakeOpenAIUsage(events=events(), clock=NOW.timestamp) as api:
        yield api


def settings_for(database_url: str, openai_api: FakeOpenAIUsage, slack: FakeSlack) -> Settings:
    return Settings(database_url=database_url, alert_channel="C0ALERTS", slack_bot_token=BOT_TOKEN,
                    slack_signing_secret=SIGNING_SECRET, slack_api_url=slack.url, reconcile_min_usd=Decimal(1),
                    sources=[Source(name="openai", kind="openai_usage", base_url=openai_api.url,
                                    api_key_env="OPENAI_ADMIN_KEY", start=date(2026, 11, 1))])


@pytest.fixture
def context(database_url: str, openai_api: FakeOpenAIUsage, slack: FakeSlack,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Context]:
    monkeypatch.setenv("OPENAI_ADMIN_KEY", openai_api.admin_key)
    ctx = Context.open(settings_for(database_url, openai_api, slack))
    [outcome] = pull_sources(ctx, now=NOW, retry=RETRY)
    assert outcome.ok, outcome.error
    yield ctx
    ctx.close()


def test_a_seeded_5_percent_price_difference_alerts_once_naming_model_and_cause(
        context: Context, openai_api: FakeOpenAIUsage, slack: FakeSlack) -> None:
    openai_api.prices = {MINI: tuple(rate * Decimal("0.95") for rate in CATALOG_MINI)}  # type: ignore[assignment]
    result = reconcile(context, date(2026, 11, 1), date(2026, 11, 20), retry=RETRY)
    [drift] = result.models
    assert (drift.biller, drift.model, drift.days, drift.drifting) == ("openai", COUNTED, 5, True)
    assert drift.theirs == drift.ours * Decimal("0.95")
    assert drift.cause is not None and "negotiated price that is not configured" in drift.cause
    assert "5% below" in drift.cause

    first = check_drift(context, now=NOW, render=alert_message, retry=RETRY)
    again = check_drift(context, now=NOW + timedelta(days=1), render=alert_message, retry=RETRY)
    assert len(first) == 1 and again == []  # once a month
    send_pending(context.sessions, outbox_client(context), now=NOW)
    [message] = [m for m in slack.messages if m["channel"] == "C0ALERTS"]
    assert MINI in message["text"] and "negotiated price" in message["text"] and "+5.3%" in message["text"]
    with context.sessions() as session:
        [alert] = session.scalars(select(Alert)).all()
        assert (alert.budget, alert.period, alert.kind) == ("drift:openai:openai/gpt-4o-mini", "2026-11", "drift")


def test_an_exact_match_stays_quiet(context: Context, openai_api: FakeOpenAIUsage) -> None:
    openai_api.prices = {MINI: CATALOG_MINI}
    result = reconcile(context, date(2026, 11, 1), date(2026, 11, 20), retry=RETRY)
    [model] = result.models
    assert not model.drifting and model.ours == model.theirs and model.ours > 1
    assert check_drift(context, now=NOW, render=alert_message, retry=RETRY) == []
    with context.sessions() as session:
        assert session.scalars(select(OutboxMessage)).all() == []


def test_an_unpriced_model_and_a_bill_that_cannot_be_read(context: Context, openai_api: FakeOpenAIUsage) -> None:
    openai_api.add_events(*events("gpt-from-the-future", days=2, first=18))  # inside the next pull's overlap
    openai_api.prices = {MINI: CATALOG_MINI, "gpt-from-the-future": CATALOG_MINI}
    pull_sources(context, now=NOW, retry=RETRY)
    result = reconcile(context, date(2026, 11, 1), date(2026, 11, 20), retry=RETRY)
    future = next(m for m in result.models if m.model == "gpt-from-the-future")
    assert future.drifting and future.cause and future.cause.startswith("an unpriced model")

    openai_api.admin_key = "sk-admin-rotated"  # ours is refused now: 401
    refused = reconcile(context, date(2026, 11, 1), date(2026, 11, 20), retry=RETRY)
    assert refused.models == [] and len(refused.errors) == 1 and "HTTP 401" in refused.errors[0]


def test_litellm_costs_against_ours(context: Context) -> None:
    def spend_log(call: str, day: int, cost: str) -> dict:
        body = payload(call, prompt_tokens=200_000, completion_tokens=50_000, response_cost=float(cost))
        body["endTime"] = datetime(2026, 11, day, 12, tzinfo=timezone.utc).timestamp()
        return body

    ours = "1.0"  # gpt-4o: 200k in at $2.50 + 50k out at $10 per 1M
    logs = [spend_log(f"exact-{d}", d, ours) for d in (10, 11)]
    logs += [spend_log(f"cheap-{d}", d, "0.95") for d in (12, 13)]
    parsed = parse_spend_logs(json.dumps(logs).encode(), catalog=context.catalog, project="gw", now=NOW)
    with transaction(context.sessions) as session:
        apply_records(session, context.catalog, parsed.records, source="litellm", now=NOW)
    exact = reconcile(context, date(2026, 11, 10), date(2026, 11, 12), retry=RETRY)
    [litellm] = [m for m in exact.models if m.biller == "litellm"]
    assert (litellm.ours, litellm.theirs, litellm.drifting) == (Decimal(2), Decimal(2), False)
    later = reconcile(context, date(2026, 11, 12), date(2026, 11, 14), retry=RETRY)
    [litellm] = [m for m in later.models if m.biller == "litellm"]
    assert litellm.drifting and litellm.cause and "LiteLLM prices openai/gpt-4o 5% lower" in litellm.cause


def day(n: int, ours: str, theirs: str, **kw) -> DayComparison:  # type: ignore[no-untyped-def]
    return DayComparison("openai", date(2026, 11, n), MINI, Decimal(ours), Decimal(theirs), **kw)


@pytest.mark.parametrize("days, expected", [
    ([day(1, "10", "10"), day(2, "10", "10"), day(3, "10", "11"), day(4, "10", "11")],
     "a price change on or about 2026-11-03"),
    ([day(1, "10", "11"), day(2, "20", "22")], "a price change not in the catalog yet"),
    ([day(1, "20", "10", sources=("openai", "otlp")), day(2, "20", "10", sources=("openai", "otlp"))],
     "the same calls recorded twice"),
    ([day(1, "10", "12", our_tokens=1000, their_tokens=1200)], "usage missing or extra: budget-guard holds 1,000"),
    ([day(1, "10", "10"), day(2, "3", "10"), day(3, "10", "10")],
     "usage missing or extra on some days (the largest gap on 2026-11-02"),
])
def test_the_likely_cause(days: list[DayComparison], expected: str) -> None:
    ours = sum((d.ours for d in days), Decimal(0))
    theirs = sum((d.theirs for d in days), Decimal(0))
    assert expected in _likely_cause("openai", MINI, days, ours, theirs, 0, Decimal("0.02"))


def test_the_scheduled_job_runs_once_across_replicas_and_the_cli_prints_the_table(
        context: Context, openai_api: FakeOpenAIUsage, database_url: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    openai_api.prices = {MINI: tuple(rate * Decimal("1.05") for rate in CATALOG_MINI)}  # type: ignore[assignment]
    second = Context.open(context.settings)
    try:
        runs = [run_claimed(ctx, {j.name: j for j in scheduled_jobs(ctx)}["reconcile"], now=NOW)
                for ctx in (context, second)]
    finally:
        second.close()
    assert sorted(runs) == [False, True]
    with context.sessions() as session:
        assert [a.kind for a in session.scalars(select(Alert))] == ["drift"]

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SOURCES", json.dumps([{"name": "openai", "kind": "openai_usage", "base_url": openai_api.url,
                                               "api_key_env": "OPENAI_ADMIN_KEY"}]))
    assert main(["reconcile", "--since", "2026-11-01", "--until", "2026-11-19", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    [model] = report["models"]
    assert model["model"] == COUNTED and model["drifting"] and "price change not in the catalog" in model["cause"]
    assert Decimal(model["theirs"]) == Decimal(model["ours"]) * Decimal("1.05")
    assert len(report["days"]) == 5
    assert main(["reconcile", "--since", "2026-11-01", "--until", "2026-11-19"]) == 0
    table = capsys.readouterr().out
    assert "DRIFT" in table and MINI in table and "-4.8%" in table
