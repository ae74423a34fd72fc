"""Budgets and alerts: once per threshold, across restarts and replicas, on the calendar."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from bot.app import admin_directory, create_app
from bot.cli import main
from bot.server import create_server
from bot.views.alerts import alert_message
from db.models import Alert, Budget, OutboxMessage, SourceState, SyncedPrice
from jobs.budgets.check import check_budgets
from jobs.config.context import Context
from jobs.config.sections import BudgetConfig, Source
from jobs.config.settings import Settings
from jobs.runtime.outbox import send_pending
from jobs.runtime.scheduler import ScheduledJob, outbox_client, run_claimed
from jobs.usage.pull import pull_sources
from jobs.usage.sources import RetryPolicy
from tests.buckets import add_buckets, spend_bucket
from tests.fakes.slack_api import FakeSlack
from tests.harness import (
    BOT_TOKEN,
    SIGNING_SECRET,
    ServerThread,
    block_actions_payload,
    post_interaction,
    post_slash_command,
    slack_settings,
)
from tests.processes import wait_until

MODEL = "meta-llama/Llama-3.3-70B-Instruct-Turbo"  # $0.88 per 1M tokens in and out


@pytest.fixture
def slack(slack: FakeSlack) -> FakeSlack:
    slack.set_usergroup("S0ADMINS", ["U0GROUPIE"])
    slack.add_channel("C0ALERTS", members=["U0LEAD", "U0OTHER"])  # who may acknowledge its alerts
    return slack


def make_settings(database_url: str, slack: FakeSlack, **overrides) -> Settings:  # type: ignore[no-untyped-def]
    values = dict(
        alert_channel="C0ALERTS",
        admins=["U0ADMIN", "S0ADMINS"],
        budgets=[BudgetConfig(name="llama-prod", amount=Decimal(1000), scope={"model": MODEL, "project": "search"},
                              thresholds=[50, 80, 100], forecast=False)],
    )
    values.update(overrides)
    return slack_settings(database_url, slack, **values)


@pytest.fixture
def app_settings(database_url: str, slack: FakeSlack) -> Settings:
    return make_settings(database_url, slack)


def spend(context: Context, at: datetime, dollars: Decimal, *, model: str = MODEL, project: str = "search",
          feature: str = "chat", source: str = "test") -> None:
    """Record usage costing exactly `dollars` at the model's $0.88/1M (input tokens only)."""
    add_buckets(context.sessions, [spend_bucket(at, dollars, exact=False, model=model, project=project,
                                                feature=feature, source=source)])


NO_RETRY = RetryPolicy(attempts=1, base_delay=0, max_delay=0, max_total_wait=0, sleep=lambda seconds: None)


def posted_texts(slack: FakeSlack) -> list[str]:
    return [m["text"] for m in slack.messages]


def run_check(context: Context, now: datetime, slack_client=None) -> list:  # type: ignore[no-untyped-def]
    posted = check_budgets(context, now=now, render=alert_message)
    send_pending(context.sessions, slack_client or outbox_client(context), now=now)
    return posted


def alerts_in(slack: FakeSlack, channel: str = "C0ALERTS") -> list[dict]:
    return [m for m in slack.messages if m["channel"] == channel]


def test_each_threshold_posts_once_and_later_ones_reply_in_thread(context: Context, slack: FakeSlack) -> None:
    now = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
    spend(context, now - timedelta(days=3), Decimal(550))
    posted = run_check(context, now)
    assert [(d.kind, d.threshold) for d in posted] == [("threshold", "50")]
    [first] = alerts_in(slack)
    assert "55% used" in first["text"] and "$550.00 of $1,000.00" in first["text"]
    assert [e["action_id"] for e in first["blocks"][-1]["elements"]] == ["alert_ack", "alert_snooze", "alert_breakdown"]

    assert run_check(context, now + timedelta(hours=1)) == []  # again: nothing new
    restarted = Context.open(context.settings)  # a restart: new process, same database
    assert run_check(restarted, now + timedelta(hours=2)) == []
    assert len(alerts_in(slack)) == 1

    spend(context, now - timedelta(days=3, hours=1), Decimal(300))
    posted = run_check(restarted, now + timedelta(hours=3))
    assert [(d.kind, d.threshold) for d in posted] == [("threshold", "80")]
    second = alerts_in(slack)[1]
    assert second["thread_ts"] == first["ts"]
    restarted.close()


def test_a_jump_past_several_thresholds_records_each_once(context: Context, slack: FakeSlack) -> None:
    now = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
    spend(context, now - timedelta(days=1), Decimal(1200))
    posted = run_check(context, now)
    assert [(d.threshold, d.covers) for d in posted] == [("100", ("50", "80"))]  # one message says it all
    assert len(alerts_in(slack)) == 1 and "Over by $200.00" in alerts_in(slack)[0]["text"]
    with context.sessions() as session:
        assert sorted(session.scalars(select(Alert.threshold))) == ["100", "50", "80"]
    assert run_check(context, now + timedelta(hours=1)) == []


def test_out_of_scope_spend_does_not_count(context: Context, slack: FakeSlack) -> None:
    now = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
    spend(context, now - timedelta(days=1), Decimal(900), project="other")
    spend(context, now - timedelta(days=1), Decimal(900), model="openai/gpt-oss-120b")
    assert run_check(context, now) == []


def test_forecast_alert_names_the_projected_date(database_url: str, slack: FakeSlack) -> None:
    settings = make_settings(database_url, slack, budgets=[
        BudgetConfig(name="steady", amount=Decimal(2000), scope={"project": "search"}, forecast=True)])
    context = Context.open(settings)
    now = datetime(2026, 11, 15, 12, tzinfo=timezone.utc)
    day = datetime(2026, 9, 1, 12, tzinfo=timezone.utc)
    while day < now:  # $100 a day: about $3,000 by month-end, over $2,000
        spend(context, day, Decimal(100))
        day += timedelta(days=1)
    posted = run_check(context, now)
    kinds = {d.kind for d in posted}
    assert "forecast" in kinds
    forecast = next(d for d in posted if d.kind == "forecast")
    assert forecast.forecast is not None and forecast.forecast.point > Decimal(2000)
    crossing = forecast.forecast.crossing(Decimal(2000))
    assert crossing is not None and date(2026, 11, 19) <= crossing <= date(2026, 11, 22)
    assert f"{crossing:%b} {crossing.day}" in forecast.headline
    assert run_check(context, now + timedelta(hours=2)) == []
    context.close()


def test_spike_names_what_drove_it(database_url: str, slack: FakeSlack) -> None:
    settings = make_settings(database_url, slack, budgets=[
        BudgetConfig(name="all", amount=Decimal(100000), forecast=False)])
    context = Context.open(settings)
    now = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
    for back in range(2, 40):
        spend(context, now - timedelta(days=back), Decimal(20))
    spend(context, now - timedelta(days=1), Decimal(20))
    spend(context, now - timedelta(days=1), Decimal(400), feature="bulk-export")
    posted = run_check(context, now)
    spike = next(d for d in posted if d.kind == "spike")
    assert spike.period == "2026-11-19"
    assert "feature=bulk-export" in spike.drivers[0].label
    assert spike.drivers[0].amount == pytest.approx(Decimal(400), abs=Decimal("0.01"))
    context.close()


def refused_source(database_url: str, slack: FakeSlack, silence_hours: int) -> Settings:
    """Settings with one usage source whose every pull is refused (nothing listens on port 9)."""
    return make_settings(database_url, slack, budgets=[], source_silence_hours=silence_hours,
                         sources=[Source(name="gateway", kind="generic_json", base_url="http://127.0.0.1:9",
                                         timeout_seconds=1)])


def test_a_source_failing_from_its_first_pull_alerts_once(database_url: str, slack: FakeSlack) -> None:
    settings = refused_source(database_url, slack, 6)
    context = Context.open(settings)
    start = datetime(2026, 11, 20, 6, tzinfo=timezone.utc)
    posted = []
    for quarter in range(0, 8 * 4):  # pulled every 15 minutes for 8 hours, refused every time
        now = start + timedelta(minutes=15 * quarter)
        pull_sources(context, now=now, retry=NO_RETRY)
        posted += run_check(context, now)
    assert [(d.kind, d.period) for d in posted] == [("source", "2026-11-20T06:00")]
    assert "gateway has been failing for 6 h" in posted[0].headline
    assert "never succeeded" in posted[0].details[0]
    assert len(posted_texts(slack)) == 1
    context.close()


def test_a_source_that_answers_without_usage_alerts_once_per_silence(database_url: str, slack: FakeSlack,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fakes.openai_usage import FakeOpenAIUsage, UsageEvent

    monkeypatch.setenv("OPENAI_ADMIN_KEY", "sk-admin-test")
    start = datetime(2026, 11, 20, 6, tzinfo=timezone.utc)
    clock = {"now": start}
    with FakeOpenAIUsage(admin_key="sk-admin-test", clock=lambda: clock["now"].timestamp()) as api:
        source = Source(name="openai", kind="openai_usage", base_url=api.url, api_key_env="OPENAI_ADMIN_KEY",
                        overlap_hours=6, start=date(2026, 11, 19), timeout_seconds=2)
        settings = make_settings(database_url, slack, budgets=[], source_silence_hours=6, sources=[source])
        context = Context.open(settings)
        api.add_events(UsageEvent(start - timedelta(minutes=30), MODEL, input_tokens=5000, output_tokens=500,
                                  input_cached_tokens=0, num_model_requests=3, project_id="proj_web",
                                  api_key_id="key_a", batch=False))
        posted = []
        for quarter in range(0, 10 * 4):
            clock["now"] = now = start + timedelta(minutes=15 * quarter)
            if quarter == 9 * 4:  # usage again after nine quiet hours
                api.add_events(UsageEvent(now - timedelta(minutes=5), MODEL, input_tokens=100, output_tokens=10,
                                          input_cached_tokens=0, num_model_requests=1, project_id="proj_web",
                                          api_key_id="key_a", batch=False))
            outcome, = pull_sources(context, now=now, retry=NO_RETRY)
            assert outcome.error is None
            posted += run_check(context, now)
        context.close()
    assert [(d.kind, d.period) for d in posted] == [("source", "2026-11-20T05:00")]
    assert "openai has returned no usage for 6 h" in posted[0].headline
    assert "No usage newer than 2026-11-20 05:00 UTC" in posted[0].details[0]


def test_a_price_change_of_a_model_in_use_alerts_once(database_url: str, slack: FakeSlack) -> None:
    context = Context.open(make_settings(database_url, slack, budgets=[]))
    now = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
    spend(context, now - timedelta(days=2), Decimal(5))
    with context.sessions() as session, session.begin():
        session.add(SyncedPrice(provider="together", model=MODEL, effective_from=now - timedelta(days=40),
                                input_rate=Decimal("0.88"), output_rate=Decimal("0.88")))
        session.add(SyncedPrice(provider="together", model=MODEL, effective_from=now - timedelta(days=2),
                                input_rate=Decimal("0.60"), output_rate=Decimal("0.90")))
    posted = run_check(context, now)
    assert [d.kind for d in posted] == ["price"]
    assert "$0.88/$0.88 → $0.60/$0.90" in posted[0].headline
    assert run_check(context, now + timedelta(hours=1)) == []
    context.close()


def test_the_period_rolls_over_on_the_first_in_the_zone_across_dst(database_url: str, slack: FakeSlack) -> None:
    # New York leaves daylight time on Sunday 2026-11-01: November starts at 04:00 UTC.
    settings = make_settings(database_url, slack, tz="America/New_York", budgets=[
        BudgetConfig(name="ny", amount=Decimal(100), scope={"project": "search"}, thresholds=[50], forecast=False)])
    context = Context.open(settings)
    spend(context, datetime(2026, 10, 31, 20, tzinfo=timezone.utc), Decimal(60))  # October, local 16:00
    spend(context, datetime(2026, 11, 1, 3, tzinfo=timezone.utc), Decimal(30))   # still Oct 31, 23:00 EDT
    october = run_check(context, datetime(2026, 11, 1, 3, 30, tzinfo=timezone.utc))
    assert [(d.period, d.threshold) for d in october] == [("2026-10", "50")]
    spend(context, datetime(2026, 11, 1, 4, tzinfo=timezone.utc), Decimal(40))  # Nov 1, 00:00 EDT
    november_start = run_check(context, datetime(2026, 11, 1, 5, tzinfo=timezone.utc))
    assert november_start == []  # $40 of $100 in November: the budget reset on the 1st
    spend(context, datetime(2026, 11, 1, 10, tzinfo=timezone.utc), Decimal(15))  # 05:00 EST, after the change
    later = run_check(context, datetime(2026, 11, 1, 12, tzinfo=timezone.utc))
    assert [(d.period, d.threshold) for d in later] == [("2026-11", "50")]
    assert "$55.00 of $100.00" in later[0].headline
    context.close()


def test_two_replicas_over_a_simulated_day_post_one_alert_per_threshold(database_url: str, slack: FakeSlack) -> None:
    settings = make_settings(database_url, slack, check_cron="*/30 * * * *")
    replicas = [Context.open(settings), Context.open(settings)]  # separate engines, like two processes
    from apscheduler.triggers.cron import CronTrigger

    job = ScheduledJob("check", CronTrigger.from_crontab("*/30 * * * *", timezone=settings.zone),
                       lambda ctx, fire: check_budgets(ctx, now=fire, render=alert_message))
    start = datetime(2026, 11, 18, 0, 0, tzinfo=timezone.utc)
    ran = []
    for slot in range(48):
        now = start + timedelta(minutes=30 * slot, seconds=5)
        spend(replicas[0], now, Decimal(25), source=f"slot{slot}")  # $1,200 over the day: 50%, 80%, 100%
        barrier = threading.Barrier(2)

        def tick(ctx: Context) -> None:
            barrier.wait()
            ran.append(run_claimed(ctx, job, now=now))
            send_pending(ctx.sessions, outbox_client(ctx), now=now)

        threads = [threading.Thread(target=tick, args=(ctx,)) for ctx in replicas]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert ran.count(True) == 48  # each period ran exactly once, on one replica or the other
    texts = [m["text"] for m in alerts_in(slack)]
    assert len(texts) == 3
    with replicas[0].sessions() as session:
        assert sorted(session.scalars(select(Alert.threshold))) == ["100", "50", "80"]
    for ctx in replicas:
        ctx.close()


def test_check_dry_run_prints_and_posts_nothing(database_url: str, slack: FakeSlack, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "budget-guard.toml"
    config.write_text('alert_channel = "C0ALERTS"\n[[budgets]]\nname = "llama-prod"\namount = 1000\n'
                      'scope = { project = "search" }\nforecast = false\n')
    monkeypatch.setenv("BUDGET_GUARD_CONFIG", str(config))
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("SLACK_API_URL", slack.url)
    context = Context.open(Settings(database_url=database_url))
    spend(context, datetime.now(timezone.utc) - timedelta(hours=1), Decimal(600))
    assert main(["check", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "[threshold] Budget llama-prod: 60% used" in out
    assert slack.calls_to("chat.postMessage") == []
    with context.sessions() as session:
        assert session.scalars(select(Alert)).all() == [] and session.scalars(select(OutboxMessage)).all() == []
        assert session.scalars(select(Budget)).all() == []  # a dry run writes nothing, budgets included
    assert main(["check"]) == 0
    assert len(slack.calls_to("chat.postMessage")) == 1
    assert main(["check"]) == 0
    assert len(slack.calls_to("chat.postMessage")) == 1
    context.close()


def write_config(path: Path, budgets: str) -> None:
    path.write_text('alert_channel = "C0ALERTS"\n' + budgets)


@pytest.mark.parametrize(("budget", "line"), [
    ('scope = { model = "no-such-model-xyz" }', "budgets 'c'.scope.model: no model called 'no-such-model-xyz'"),
    ('scope = { mode = "realtime" }', "budgets 'c'.scope: scope mode 'realtime' is not one of serverless, batch"),
    ('channel = "#general"', "budgets 'c'.channel: '#general' is not a channel ID"),
    ('mention = "@bob"', "budgets 'c'.mention: '@bob' is not a mention"),
])
def test_a_budget_the_file_gets_wrong_stops_the_command_in_one_line(  # type: ignore[no-untyped-def]
        database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, budget: str, line: str) -> None:
    config = tmp_path / "budget-guard.toml"
    write_config(config, f'[[budgets]]\nname = "c"\namount = 100\n{budget}\n')
    monkeypatch.setenv("BUDGET_GUARD_CONFIG", str(config))
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert main(["check", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and line in err, err


def test_file_budgets_follow_the_file_unless_slack_changed_them(database_url: str, slack: FakeSlack,
                                                                tmp_path: Path) -> None:
    from jobs.budgets.specs import BudgetConfig as Config
    from jobs.budgets.specs import current_budgets, delete, save
    from jobs.config.settings import load_settings

    config = tmp_path / "budget-guard.toml"

    def budgets_with(text: str) -> dict[str, object]:
        write_config(config, text)
        context = Context.open(load_settings(config, database_url=database_url))
        with context.sessions() as session:
            found = {b.name: b for b in current_budgets(session, context.settings, context.catalog)}
        context.close()
        return found

    first = budgets_with('[[budgets]]\nname = "a"\namount = 100\nscope = { model = "llama-3.3-70b" }\n'
                         '[[budgets]]\nname = "b"\namount = 200\n[[budgets]]\nname = "c"\namount = 300\n')
    assert first["a"].scope == {"model": MODEL}  # resolved as /budget set resolves it
    edited = budgets_with('[[budgets]]\nname = "a"\namount = 150\nscope = { model = "llama-3.3-70b" }\n'
                          '[[budgets]]\nname = "c"\namount = 300\n')
    assert {n: b.amount for n, b in edited.items()} == {"a": Decimal(150), "c": Decimal(300)}  # b retired
    context = Context.open(load_settings(config, database_url=database_url))
    with context.sessions() as session, session.begin():
        save(session, Config(name="a", amount=Decimal(999), channel="C0SLACK"), user="U0ADMIN")
        delete(session, "c", user="U0ADMIN")
    context.close()
    after_slack = budgets_with('[[budgets]]\nname = "a"\namount = 150\n[[budgets]]\nname = "b"\namount = 200\n'
                               '[[budgets]]\nname = "c"\namount = 300\n')
    assert {n: b.amount for n, b in after_slack.items()} == {"a": Decimal(999), "b": Decimal(200)}


# -- Slack: buttons and /budget over real HTTP --------------------------------------------


@pytest.fixture
def server(context: Context) -> Iterator[ServerThread]:
    admins = admin_directory(context)
    admins.refresh()  # warm, as the background refresh keeps it in serve
    with ServerThread(create_server(context, create_app(context, admins=admins))) as running:
        yield running


def click(server: ServerThread, slack: FakeSlack, action_id: str, message: dict, user: str = "U0LEAD",
          value: str | None = None, secret: str = SIGNING_SECRET) -> httpx.Response:
    button = next(e for e in message["blocks"][-1]["elements"] if e["action_id"] == action_id)
    payload = block_actions_payload(message, action_id, value if value is not None else button["value"],
                                    response_url=slack.response_url(action_id), user=user)
    return post_interaction(server.url, payload, secret)


def responses(slack: FakeSlack, key: str, n: int) -> list:  # type: ignore[type-arg]
    """The posts to a response_url, once there are `n` of them (the work follows the ack)."""
    assert wait_until(lambda: len([p for p in slack.response_posts if p.key == key]) >= n, timeout=10)
    return [p for p in slack.response_posts if p.key == key]


def test_buttons_acknowledge_snooze_and_break_down(context: Context, slack: FakeSlack, server: ServerThread) -> None:
    now = datetime.now(timezone.utc)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)  # both spends on one day: no spike alert
    spend(context, max(now - timedelta(hours=2), today), Decimal(600), feature="search-api")
    run_check(context, now)
    [message] = alerts_in(slack)

    assert click(server, slack, "alert_ack", message).status_code == 200
    assert wait_until(lambda: len(slack.calls_to("chat.update")) == 1, timeout=10)
    with context.sessions() as session:
        alert = session.scalar(select(Alert))
        assert alert.acknowledged_by == "U0LEAD"
    updated = alerts_in(slack)[0]
    assert "Acknowledged by <@U0LEAD>" in json.dumps(updated["blocks"])
    assert all(b["type"] != "actions" for b in updated["blocks"])

    assert click(server, slack, "alert_breakdown", message).status_code == 200
    [post] = responses(slack, "alert_breakdown", 1)
    assert post.payload["response_type"] == "ephemeral"
    assert "search-api" in json.dumps(post.payload["blocks"]) and "$600.00" in json.dumps(post.payload["blocks"])

    assert click(server, slack, "alert_snooze", message).status_code == 200
    assert wait_until(lambda: len(slack.calls_to("chat.update")) == 2, timeout=10)
    with context.sessions() as session:
        assert session.scalar(select(Alert.snoozed_until)) > now + timedelta(hours=23)
    spend(context, max(now - timedelta(hours=1), today), Decimal(300))
    assert run_check(context, now) == []  # snoozed: the 80% alert waits
    assert [d.threshold for d in run_check(context, now + timedelta(hours=25))] == ["80"]


def test_forged_or_unknown_buttons_change_nothing(context: Context, slack: FakeSlack, server: ServerThread) -> None:
    now = datetime.now(timezone.utc)
    spend(context, now - timedelta(hours=2), Decimal(600))
    run_check(context, now)
    [message] = alerts_in(slack)
    assert click(server, slack, "alert_ack", message, secret="forged-secret").status_code == 401
    bogus = json.dumps({"alert_id": 99999, "budget": "llama-prod"})
    assert click(server, slack, "alert_ack", message, value=bogus).status_code == 200
    assert click(server, slack, "alert_ack", message, value="not json").status_code == 200
    refused = responses(slack, "alert_ack", 2)
    assert len(refused) == 2 and all("nothing was changed" in p.payload["text"] for p in refused)
    with context.sessions() as session:
        assert session.scalar(select(Alert.acknowledged_by)) is None
    assert slack.calls_to("chat.update") == []


def test_an_alert_id_past_the_column_is_a_refusal_not_an_overflow(context: Context, slack: FakeSlack,
                                                                    server: ServerThread,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """Issue 15: an alert_id of 2**63 raised OverflowError."""
    now = datetime.now(timezone.utc)
    spend(context, now - timedelta(hours=2), Decimal(600))
    run_check(context, now)
    [message] = alerts_in(slack)
    for action in ("alert_ack", "alert_snooze", "alert_breakdown"):
        for alert_id in (2**63, 2**31, -1):
            value = json.dumps({"alert_id": alert_id, "budget": "llama-prod"})
            assert click(server, slack, action, message, value=value).status_code == 200
        posts = responses(slack, action, 3)  # the work follows the ack
        assert len(posts) == 3 and all("nothing was changed" in p.payload["text"] for p in posts)
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_only_the_alerts_channel_and_admins_may_acknowledge_or_snooze(context: Context, slack: FakeSlack,
                                                                       server: ServerThread) -> None:
    now = datetime.now(timezone.utc)
    spend(context, now - timedelta(hours=2), Decimal(600))
    run_check(context, now)
    [message] = alerts_in(slack)
    for action in ("alert_ack", "alert_snooze"):
        assert click(server, slack, action, message, user="U0STRANGER").status_code == 200
    refused = [p.payload["text"] for action in ("alert_ack", "alert_snooze") for p in responses(slack, action, 1)]
    assert len(refused) == 2 and all("Only members of <#C0ALERTS> and budget admins" in t for t in refused)
    with context.sessions() as session:
        alert = session.scalar(select(Alert))
        assert (alert.acknowledged_by, alert.snoozed_until) == (None, None)
    assert slack.calls_to("chat.update") == []
    assert slack.calls_to("conversations.members")[0].params["channel"] == "C0ALERTS"

    assert click(server, slack, "alert_snooze", message, user="U0ADMIN").status_code == 200  # an admin, not a member
    assert wait_until(lambda: len(slack.calls_to("chat.update")) == 1, timeout=10)
    assert click(server, slack, "alert_ack", message, user="U0GROUPIE").status_code == 200  # an admin by group
    assert wait_until(lambda: len(slack.calls_to("chat.update")) == 2, timeout=10)
    assert click(server, slack, "alert_ack", message, user="U0OTHER").status_code == 200  # a member
    assert wait_until(lambda: len(slack.calls_to("chat.update")) == 3, timeout=10)
    with context.sessions() as session:
        alert = session.scalar(select(Alert))
        assert alert.snoozed_until is not None and alert.acknowledged_by == "U0OTHER"


def test_a_forged_breakdown_button_shows_nothing(context: Context, slack: FakeSlack, server: ServerThread) -> None:
    now = datetime.now(timezone.utc)
    spend(context, now - timedelta(hours=2), Decimal(600))
    run_check(context, now)
    [message] = alerts_in(slack)
    for value in (json.dumps({"alert_id": 99999, "budget": "llama-prod"}),
                  json.dumps({"alert_id": 1, "budget": "source:anything"}), "not json"):
        assert click(server, slack, "alert_breakdown", message, value=value).status_code == 200
    posts = responses(slack, "alert_breakdown", 3)
    assert len(posts) == 3 and all("nothing was changed" in p.payload["text"] for p in posts)
    assert all("$600.00" not in json.dumps(p.payload) for p in posts)


def test_a_snoozed_source_alert_waits(database_url: str, slack: FakeSlack) -> None:
    settings = refused_source(database_url, slack, 1)
    context = Context.open(settings)
    start = datetime(2026, 11, 20, 6, tzinfo=timezone.utc)
    pull_sources(context, now=start, retry=NO_RETRY)
    [first] = run_check(context, start + timedelta(hours=2))
    with context.sessions() as session:
        alert_id = session.scalar(select(Alert.id))
    from jobs.budgets.check import snooze

    assert snooze(context, alert_id, first.budget, "U0LEAD", now=start + timedelta(hours=2)) is not None
    with context.sessions() as session, session.begin():  # the source recovers, then fails again
        state = session.get(SourceState, "gateway")
        state.failing_since = start + timedelta(hours=3)
    assert run_check(context, start + timedelta(hours=5)) == []  # snoozed
    assert [d.kind for d in run_check(context, start + timedelta(hours=27))] == ["source"]
    context.close()


def test_budget_command_admins_only_with_specific_refusals(context: Context, slack: FakeSlack,
                                                           server: ServerThread) -> None:
    def say(text: str, user: str) -> dict:
        response = post_slash_command(server.url, text, command="/budget", user_id=user)
        assert response.status_code == 200
        return response.json()

    def budgets() -> dict[str, Budget]:
        with context.sessions() as session:
            return {b.name: b for b in session.scalars(select(Budget))}

    listed = say("list", "U0ANYONE")
    assert "llama-prod" in json.dumps(listed["blocks"]) and listed["response_type"] == "ephemeral"
    assert listed["text"] == "1 budget"
    before = {n: (b.amount, b.scope) for n, b in budgets().items()}

    refused = say("set new-one 500 project=x", "U0ANYONE")
    assert "only budget admins" in refused["text"]
    for text, fragment in [
        ("set team-a lots", "the amount must be dollars"),
        ("set team-a -5", "more than $0"),
        ("set team-a 500 model=llma-3.3", "no model called 'llma-3.3'; did you mean"),
        ("set team-a 500 team=x", "unknown scope 'team'"),
        ("set team-a 500 mode=realtime", "mode= is one of"),
        ("set bad/name 500", "a budget name is"),
    ]:
        answer = say(text, "U0ADMIN")
        assert fragment in answer["text"], text
        assert answer["blocks"][0]["text"]["type"] == "plain_text"
    assert {n: (b.amount, b.scope) for n, b in budgets().items()} == before

    saved = say("set team-a 2.5k model=llama-3.3-70b feature=chat 60,90 <#C0TEAM|team-a>", "U0GROUPIE")
    assert "created" in json.dumps(saved["blocks"])
    team = budgets()["team-a"]
    assert team.amount == Decimal("2500.00") and team.scope == {"model": MODEL, "feature": "chat"}
    assert team.thresholds == [60, 90] and team.channel == "C0TEAM" and team.origin == "slack"
    assert say("list", "U0ANYONE")["text"] == "2 budgets"

    assert "only budget admins" in say("delete team-a", "U0ANYONE")["text"]
    assert "deleted" in say("delete team-a", "U0ADMIN")["text"]
    assert budgets()["team-a"].deleted
    # Survives a restart; the file does not bring a deleted budget back.
    restarted = Context.open(context.settings)
    with restarted.sessions() as session:
        from jobs.budgets.specs import current_budgets

        assert [b.name for b in current_budgets(session, restarted.settings, restarted.catalog)] == ["llama-prod"]
    restarted.close()
    assert "there is no budget called" in say("delete nope", "U0ADMIN")["text"]


def test_a_budget_set_from_slack_needs_a_channel_when_there_is_no_default(database_url: str,
                                                                          slack: FakeSlack) -> None:
    context = Context.open(make_settings(database_url, slack, budgets=[], alert_channel=None, admins=["U0ADMIN"]))
    with ServerThread(create_server(context, create_app(context))) as server:
        refused = post_slash_command(server.url, "set team-a 500 project=x", command="/budget",
                                     user_id="U0ADMIN").json()
        assert "name a channel for its alerts" in refused["text"]
        saved = post_slash_command(server.url, "set team-a 500 project=x <#C0TEAM|team>", command="/budget",
                                   user_id="U0ADMIN").json()
        assert "saved" in saved["text"]
    with context.sessions() as session:
        assert [(b.name, b.channel) for b in session.scalars(select(Budget))] == [("team-a", "C0TEAM")]
    context.close()


def test_the_production_schedule_runs_in_the_configured_zone_once_per_period(database_url: str,
                                                                             slack: FakeSlack) -> None:
    from jobs.schedule import scheduled_jobs

    settings = make_settings(database_url, slack, tz="Asia/Tokyo", check_cron="0 9 * * *", pull_cron="*/15 * * * *",
                             together_api_key="tok-test", sources=[Source(name="gateway", kind="generic_json",
                                                                          base_url="http://127.0.0.1:9")])
    replicas = [Context.open(settings), Context.open(settings)]
    jobs = {job.name: job for job in scheduled_jobs(replicas[0])}
    assert set(jobs) >= {"pull", "price-sync", "check"}
    utc_evening = datetime(2026, 11, 19, 23, 30, tzinfo=timezone.utc)  # 08:30 on the 20th in Tokyo
    assert jobs["check"].trigger.get_next_fire_time(None, utc_evening) == datetime(2026, 11, 20, 0, 0, tzinfo=timezone.utc)
    now = datetime.now(timezone.utc)  # the job checks as of the clock, as it does in production
    local = now.astimezone(settings.zone)
    month_start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0).astimezone(timezone.utc)
    spend(replicas[0], max(now - timedelta(hours=1), month_start), Decimal(600))
    runs = [run_claimed(ctx, {j.name: j for j in scheduled_jobs(ctx)}["check"], now=now) for ctx in replicas]
    assert sorted(runs) == [False, True]
    with replicas[0].sessions() as session:
        month = now.astimezone(settings.zone).strftime("%Y-%m")
        assert [(a.period, a.threshold) for a in session.scalars(select(Alert))] == [(month, "50")]
    for ctx in replicas:
        ctx.close()


def test_a_mention_hidden_in_a_model_name_is_inert_in_an_alert(context: Context, slack: FakeSlack) -> None:
    now = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
    with context.sessions() as session, session.begin():
        session.add(Budget(name="all", amount=Decimal(100), scope={}, thresholds=[50], forecast=False,
                           channel="C0ALERTS", origin="slack", deleted=False))
    spend(context, now - timedelta(hours=2), Decimal(80), model="<!channel> *evil*", feature="<@U0BOSS>")
    run_check(context, now)
    [message] = [m for m in alerts_in(slack) if "all" in m["text"]]
    raw = json.dumps(message)
    assert "<!channel>" not in raw and "<@U0BOSS>" not in raw
    assert "&lt;!channel&gt;" in json.dumps(message["blocks"])
