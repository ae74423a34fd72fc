"""Model names in recorded usage resolve as quotes and budgets resolve them: pushed, imported
and pulled usage under a short or provider-style name is priced and counts toward a budget on
the catalog model; a name nothing matches stays unpriced, is named in the digest, and
`reprice` resolves it once an `[[aliases]]` entry says what it is."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from bot.cli import main
from bot.server import create_server
from db.models import UsageBucket
from db.totals import totals
from jobs.budgets.check import check_budgets
from jobs.config.context import Context
from jobs.config.sections import BudgetConfig, Source
from jobs.config.settings import Settings
from jobs.usage.imports import import_file
from jobs.usage.pull import pull_sources
from pricing.catalog import Price, UnknownModel, load_catalog
from tests.fakes.openai_usage import FakeOpenAIUsage, UsageEvent
from tests.harness import ServerThread

LLAMA = "meta-llama/Llama-3.3-70B-Instruct-Turbo"  # $0.88 per 1M in and out
TOKEN = "tok_search"


@pytest.fixture(scope="module")
def catalog():  # type: ignore[no-untyped-def]
    return load_catalog()


@pytest.mark.parametrize(("name", "label"), [
    ("llama-3.3-70b", LLAMA),
    ("maestro", "arcee-ai/maestro-reasoning"),
    ("deepseek-v3", "deepseek-ai/DeepSeek-V3"),
    ("gpt-4o", "openai/gpt-4o"),  # not on together.ai: the maker's own API
    ("gpt-4o-2024-08-06", "openai/gpt-4o"),  # as OpenAI's usage API reports it
    ("claude-3-5-sonnet-20241022", "anthropic/claude-3-5-sonnet"),
    ("text-embedding-3-small", "openai/text-embedding-3-small"),
])
def test_names_as_services_send_them_resolve_to_the_catalog_model(catalog, name: str, label: str) -> None:  # type: ignore[no-untyped-def]
    assert catalog.resolve(name).label == label


def test_suggestions_for_an_unknown_name_are_related_or_none(catalog) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UnknownModel) as info:
        catalog.resolve("gpt-4-turbo-ultra")
    assert info.value.suggestions and all("gpt" in s for s in info.value.suggestions), info.value.suggestions
    with pytest.raises(UnknownModel) as info:
        catalog.resolve("zzqqxxv")
    assert info.value.suggestions == ()


def test_an_added_price_or_alias_changes_what_a_remembered_name_means(catalog) -> None:  # type: ignore[no-untyped-def]
    fresh = load_catalog()
    assert fresh.match("house-llama") is None  # remembered as unknown...
    fresh.alias("house-llama", LLAMA)
    assert fresh.match("house-llama").label == LLAMA  # ...until an alias says otherwise
    assert fresh.match("acme/own-model") is None
    fresh.add(Price("together", "acme/own-model", Decimal(1), Decimal(2), source="config"))
    assert fresh.match("acme/own-model").label == "acme/own-model"
    with pytest.raises(UnknownModel):
        fresh.alias("x", "no-such/model-at-all")


# -- push, import, pull ------------------------------------------------------------------------


def settings_for(database_url: str, **extra) -> Settings:  # type: ignore[no-untyped-def]
    return Settings(database_url=database_url, ingest_tokens=f"search={TOKEN}", alert_channel="C0ALERTS",
                    budgets=[BudgetConfig(name="llama", amount=Decimal(1), scope={"model": LLAMA},
                                          thresholds=[50], forecast=False)], **extra)


@pytest.fixture
def app_settings(database_url: str) -> Settings:
    return settings_for(database_url)


def pushed(model: str, event_id: str, prompt: int, completion: int, created: int) -> str:
    return json.dumps({"id": event_id, "created": created, "model": model,
                       "usage": {"prompt_tokens": prompt, "completion_tokens": completion}})


def test_a_push_under_a_short_name_is_priced_and_counts_toward_the_budget(context: Context) -> None:
    now = datetime.now(timezone.utc)
    created = int(time.time()) - 120
    body = "\n".join([pushed("llama-3.3-70b", "r1", 400_000, 200_000, created),
                      pushed(LLAMA, "r2", 300_000, 100_000, created)])
    with ServerThread(create_server(context, None)) as server:
        answer = httpx.post(f"{server.url}/v1/usage", content=body, timeout=10,
                            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"})
    assert answer.json() == {"accepted": 2, "duplicates": 0}

    with context.sessions() as session:
        [group] = totals(session, None, None, "model")
        stored = sorted(session.execute(select(UsageBucket.model, UsageBucket.catalog_model)).all())
    # 1M tokens at $0.88 per 1M, all under the catalog's name; each bucket keeps the name it was sent as.
    assert (group.key, group.cost, group.unpriced_tokens) == (LLAMA, Decimal("0.88"), 0)
    assert stored == [("llama-3.3-70b", LLAMA), (LLAMA, LLAMA)]

    [draft] = check_budgets(context, now=now, dry_run=True)  # $0.88 of $1: past the 50% threshold
    assert draft.budget == "llama" and draft.threshold == "50" and "$0.88" in draft.headline


def test_imported_and_pulled_names_resolve_and_an_unknown_one_stays_unpriced(
        database_url: str, tmp_path: Path) -> None:
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    csv = tmp_path / "usage.csv"
    stamp = (now - timedelta(hours=2)).isoformat()
    csv.write_text("id,timestamp,model,prompt_tokens,completion_tokens\n"
                   f"a,{stamp},maestro,3000,1000\n"
                   f"b,{stamp},deepseek-v3,1000000,0\n"
                   f"c,{stamp},acme-private-7b,5000,5000\n")
    events = [UsageEvent(now - timedelta(hours=3), "gpt-4o-mini-2024-07-18", input_tokens=1_000_000,
                         output_tokens=0, project_id="web")]
    with FakeOpenAIUsage(admin_key="sk-admin", events=events) as api:
        source = Source(name="openai", kind="openai_usage", base_url=api.url, api_key_env="TEST_OPENAI_KEY",
                        start=(now - timedelta(days=1)).date())
        context = Context.open(settings_for(database_url, sources=[source]))
        try:
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("TEST_OPENAI_KEY", "sk-admin")
                [outcome] = pull_sources(context, now=now)
            assert outcome.ok, outcome.error
            assert import_file(context, csv, now=now).accepted == 3
            with context.sessions() as session:
                costs = {g.key: (g.cost, g.unpriced_tokens) for g in totals(session, None, None, "model")}
        finally:
            context.close()
    mini_rate = context.catalog.price("openai", "gpt-4o-mini", now).input  # USD per 1M input tokens
    assert costs == {
        "arcee-ai/maestro-reasoning": (Decimal("0.006"), 0),  # 3,000 x $0.90 + 1,000 x $3.30 per 1M
        "deepseek-ai/DeepSeek-V3": (Decimal("1.25"), 0),  # 1M input tokens at $1.25
        "openai/gpt-4o-mini": (mini_rate, 0),  # 1M input tokens
        "acme-private-7b": (None, 10_000),
    }


def test_reprice_resolves_a_name_again_after_an_alias_and_the_digest_names_it_until_then(
        database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    records = tmp_path / "usage.jsonl"
    created = int(time.time()) - 600
    records.write_text(pushed("house-llama", "h1", 500_000, 500_000, created) + "\n")
    assert main(["import", str(records)]) == 0
    assert main(["digest", "--dry-run", "--out", str(tmp_path / "out")]) == 0
    digest = capsys.readouterr().out
    assert "`house-llama` (1M)" in digest and "[[aliases]]" in digest

    config = tmp_path / "budget-guard.toml"
    config.write_text(f'[[aliases]]\nname = "house-llama"\nmodel = "{LLAMA}"\n')
    monkeypatch.setenv("BUDGET_GUARD_CONFIG", str(config))
    month = datetime.now(timezone.utc).date().replace(day=1).isoformat()
    assert main(["reprice", "--since", month]) == 0
    out = capsys.readouterr().out
    assert "1 changed" in out and "1 row(s) newly priced" in out and f"house-llama now counts as {LLAMA}" in out
    assert main(["usage", "--json"]) == 0
    [group] = json.loads(capsys.readouterr().out)
    assert (group["key"], group["cost"], group["unpriced_tokens"]) == (LLAMA, "0.88", 0)

    config.write_text('[[aliases]]\nname = "house-llama"\nmodel = "meta-llama/no-such-model"\n')
    assert main(["usage"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("budget-guard: configuration: aliases 'house-llama'.model: no catalog model called")


def test_gpt_4o_mini_is_priced_the_same_in_the_ledger_the_forecast_and_the_advice(
        database_url: str, tmp_path: Path) -> None:
    """One price rule: usage named as OpenAI names it is priced at ingest, repriced by the
    forecast when the price changes, and costed by the batch advice, all at the catalog's rate."""
    from jobs.advice.batch import advise
    from jobs.config.sections import Offline, PriceOverride
    from jobs.forecast.month_end import forecast_month_end
    from pricing.costs import token_cost

    now = datetime(2026, 11, 15, 12, tzinfo=timezone.utc)
    today = now.date()
    csv = tmp_path / "usage.csv"
    lines = ["id,timestamp,model,prompt_tokens,completion_tokens,feature"]
    for n in range(1, 41):  # 40 nights, 03:00 UTC
        stamp = datetime.combine(today - timedelta(days=n), datetime.min.time(), timezone.utc) + timedelta(hours=3)
        lines.append(f"n{n},{stamp.isoformat()},gpt-4o-mini,20000000,5000000,nightly-summaries")
    csv.write_text("\n".join(lines) + "\n")
    plain = settings_for(database_url, offline=Offline(features=["nightly-summaries"]))
    doubled = settings_for(database_url, offline=Offline(features=["nightly-summaries"]), prices=[
        PriceOverride(model="openai/gpt-4o-mini", input=Decimal("0.30"), output=Decimal("1.20"),
                      start=today + timedelta(days=1))])
    context = Context.open(plain)
    try:
        assert import_file(context, csv, now=now).accepted == 40
        rate = context.catalog.price("openai", "gpt-4o-mini", today)
        night = token_cost(rate, 20_000_000, 5_000_000)  # $3 + $3
        with context.sessions() as session:
            [(model, cost, unpriced)] = [(g.key, g.cost, g.unpriced_tokens)
                                         for g in totals(session, None, None, "model")]
            assert (model, cost, unpriced) == ("openai/gpt-4o-mini", 40 * night, 0)  # the ledger

            [candidate] = advise(session, context.settings, context.catalog, now=now).candidates  # the advice
            assert candidate.window_cost == 28 * night
            assert candidate.window_saving == 28 * night * rate.batch_discount / 100
            before = forecast_month_end(session, context.settings, context.catalog, now=now)
    finally:
        context.close()
    context = Context.open(doubled)
    try:
        with context.sessions() as session:
            after = forecast_month_end(session, context.settings, context.catalog, now=now)
    finally:
        context.close()
    assert before is not None and after is not None
    assert before.total.unpriced_tokens == after.total.unpriced_tokens == 0
    assert before.total.point > before.total.month_to_date == after.total.month_to_date
    # the forecast prices each day to come at the price in effect that day: twice the rate from tomorrow
    assert [d for d, _ in after.total.remaining] == [d for d, _ in before.total.remaining]
    for (day, was), (_, repriced) in zip(before.total.remaining, after.total.remaining):
        assert abs(repriced - (was * 2 if day > today else was)) <= Decimal("0.000001"), day
