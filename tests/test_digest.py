"""The daily digest end to end: scheduler claims, outbox, fake Slack on 127.0.0.1, both engines.

Days pass on a simulated clock: each tick runs the scheduler's own digest trigger through
`run_claimed` (what the cron job and the catch-up tick both call) at a chosen instant."""

from __future__ import annotations

import json
import threading
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from slack_sdk import WebClient
from sqlalchemy import select

from bot.cli import main
from bot.runtime import renderers
from bot.views.blocks import MAX_BLOCKS, MAX_HEADER_CHARS, MAX_SECTION_CHARS
from bot.views.digest import digest_blocks
from db.models import BudgetSnapshot, JobClaim, OutboxMessage, to_nanos
from jobs.advice.batch import advise
from jobs.budgets.check import check_budgets
from jobs.config.context import Context
from jobs.config.sections import BudgetConfig
from jobs.config.settings import Settings
from jobs.digest.daily import build_digest, digest_job
from jobs.digest.overview import build_overview
from jobs.runtime.outbox import send_pending
from jobs.runtime.scheduler import ScheduledJob, outbox_client, run_claimed
from jobs.schedule import scheduled_jobs
from pricing.money import usd
from tests.buckets import add_buckets, spend_bucket
from tests.fakes.slack_api import FakeSlack
from tests.harness import BOT_TOKEN, slack_settings

ZONE = ZoneInfo("Europe/Berlin")
MODEL = "meta-llama/Llama-3.3-70B-Instruct-Turbo"  # $0.88 per 1M tokens in and out
SMALL = "openai/gpt-oss-120b"
CHANNEL = "C0DIGEST"
PNG = b"\x89PNG\r\n\x1a\n"


def local(day: date, hour: int = 9, minute: int = 0, second: int = 0) -> datetime:
    """A local time in Berlin as an aware UTC instant."""
    return datetime.combine(day, time(hour, minute, second), ZONE).astimezone(timezone.utc)


def make_settings(database_url: str, slack: FakeSlack, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        tz="Europe/Berlin", digest_channel=CHANNEL, alert_channel="C0ALERTS",
        budgets=[BudgetConfig(name="search", amount=Decimal(3000), scope={"project": "search"})],
    )
    values.update(overrides)
    return slack_settings(database_url, slack, **values)


@pytest.fixture
def app_settings(database_url: str, slack: FakeSlack) -> Settings:
    return make_settings(database_url, slack)


def bucket(at: datetime, dollars: Decimal | int | str, *, model: str = MODEL, project: str = "search",
           feature: str = "chat", mode: str = "serverless", tags: str = "", uptime: int = 0,
           priced: bool = True) -> dict[str, Any]:
    """One hourly bucket costing exactly `dollars` (tokens as at $0.88/1M input)."""
    return spend_bucket(at, dollars, priced=priced, model=model, mode=mode, project=project, feature=feature,
                        tags=tags, uptime_minutes=uptime)


def record(context: Context, buckets: list[dict[str, Any]]) -> None:
    add_buckets(context.sessions, buckets)


def steady_ledger(context: Context, until: date, days: int = 70) -> None:
    """Two models, weekdays busier than weekends, one bucket a day at noon Berlin time."""
    rows = []
    for n in range(1, days + 1):
        day = until - timedelta(days=n)
        weekend = day.weekday() >= 5
        rows.append(bucket(local(day, 12), 60 if weekend else 100))
        rows.append(bucket(local(day, 13), 20 if weekend else 30, model=SMALL, project="support"))
    record(context, rows)


def scheduler_digest(context: Context) -> ScheduledJob:
    [job] = [j for j in scheduled_jobs(context, renderers()) if j.name == "digest"]
    return job


def tick(context: Context, at: datetime) -> bool:
    """The scheduler's digest trigger run at simulated instant `at` (as a cron fire or a catch-up tick)."""
    trigger = scheduler_digest(context).trigger
    job = ScheduledJob("digest", trigger,
                       lambda ctx, fire: digest_job(ctx, fire, render=renderers()["digest"], now=at))
    return run_claimed(context, job, now=at)


def client_for(slack: FakeSlack) -> WebClient:
    return WebClient(token=BOT_TOKEN, base_url=slack.url, retry_handlers=[], timeout=10)


def digests(slack: FakeSlack) -> list[dict[str, Any]]:
    return [m for m in slack.messages if m["channel"] == CHANNEL]


def header_of(message: dict[str, Any]) -> str:
    return message["blocks"][0]["text"]["text"]


# ----------------------------------------------------------------------------- once a day, once


def test_one_digest_a_day_from_two_replicas(database_url: str, slack: FakeSlack) -> None:
    settings = make_settings(database_url, slack)
    replicas = [Context.open(settings), Context.open(settings)]
    first_day = date(2026, 11, 23)
    steady_ledger(replicas[0], first_day + timedelta(days=3))
    clients = [client_for(slack), client_for(slack)]
    try:
        for offset in range(3):
            day = first_day + timedelta(days=offset)
            # The cron fire on both replicas, then catch-up ticks on both: one wins, once.
            for at in (local(day, 9, 0, 1), local(day, 9, 0, 40), local(day, 9, 5), local(day, 13)):
                barrier = threading.Barrier(2)
                ran: list[bool] = []

                def contend(ctx: Context, at: datetime = at) -> None:
                    barrier.wait()
                    ran.append(tick(ctx, at))

                threads = [threading.Thread(target=contend, args=(ctx,)) for ctx in replicas]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                assert ran.count(True) <= 1
                senders = [threading.Thread(target=send_pending, args=(ctx.sessions, c), kwargs={"now": at})
                           for ctx, c in zip(replicas, clients)]
                for t in senders:
                    t.start()
                for t in senders:
                    t.join()
            posted = digests(slack)
            assert len(posted) == offset + 1
            assert f"{day:%b} {day.day}, 2026" in header_of(posted[-1]) and "(late)" not in posted[-1]["text"]
    finally:
        for ctx in replicas:
            ctx.close()
    assert len(slack.calls_to("chat.postMessage")) == 3
    assert len(slack.calls_to("files.completeUploadExternal")) == 3
    with replicas[0].sessions() as session:
        rows = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "digest")).all()
        assert sorted(r.dedupe_key for r in rows) == ["digest:2026-11-23", "digest:2026-11-24", "digest:2026-11-25"]
        assert all(r.status == "sent" and r.file_posted and not r.late for r in rows)
        claims = session.scalars(select(JobClaim).where(JobClaim.job == "digest")).all()
        assert len(claims) == 3 and all(c.status == "done" for c in claims)


def test_a_missed_digest_is_posted_once_when_back_and_marked_late(context: Context, slack: FakeSlack) -> None:
    steady_ledger(context, date(2026, 11, 27))
    client = client_for(slack)
    tick(context, local(date(2026, 11, 24), 9, 0, 1))
    send_pending(context.sessions, client, now=local(date(2026, 11, 24), 9, 1))
    # Down from before 09:00 on the 25th until 11:30: the catch-up tick posts the missed one.
    back = local(date(2026, 11, 25), 11, 30)
    assert tick(context, back)
    send_pending(context.sessions, client, now=back)
    for later in (back + timedelta(minutes=1), back + timedelta(hours=5)):
        assert not tick(context, later)  # claimed and done: never again
        send_pending(context.sessions, client, now=later)
    posted = digests(slack)
    assert len(posted) == 2
    late = posted[1]
    assert header_of(late) == "Spend digest · Wed, Nov 25, 2026 (late)"
    assert "(late)" in late["text"]
    assert "was due at 09:00 (Europe/Berlin)" in json.dumps(late["blocks"])
    with context.sessions() as session:
        row = session.scalar(select(OutboxMessage).where(OutboxMessage.dedupe_key == "digest:2026-11-25"))
        assert row is not None and row.late and row.status == "sent"
    # The next day's, on time, is not late.
    tick(context, local(date(2026, 11, 26), 9, 0, 2))
    send_pending(context.sessions, client, now=local(date(2026, 11, 26), 9, 1))
    assert "(late)" not in digests(slack)[2]["text"]


def test_a_digest_missed_until_after_midnight_is_skipped_and_the_next_one_reports_its_day(
        context: Context, slack: FakeSlack) -> None:
    """Down from before 09:00 on Mon Nov 30 until 08:00 on Tue Dec 1 (Berlin): no digest of Nov 30
    built from December's figures; the Dec 1 digest, on time, reports Nov 30 as yesterday."""
    steady_ledger(context, date(2026, 12, 1))  # noon and 13:00 every day up to Nov 30
    record(context, [bucket(local(date(2026, 12, 1), 7), 7)])  # December's first spend, before 08:00
    client = client_for(slack)
    assert tick(context, local(date(2026, 11, 29), 9, 0, 1))
    send_pending(context.sessions, client, now=local(date(2026, 11, 29), 9, 1))
    back = local(date(2026, 12, 1), 8)
    assert tick(context, back)  # the catch-up tick claims Nov 30's period...
    send_pending(context.sessions, client, now=back)
    assert not tick(context, back + timedelta(minutes=1))  # ...once
    send_pending(context.sessions, client, now=back + timedelta(minutes=1))
    assert [header_of(m) for m in digests(slack)] == ["Spend digest · Sun, Nov 29, 2026"]  # and posts nothing

    at = local(date(2026, 12, 1), 9, 0, 1)
    assert tick(context, at)
    send_pending(context.sessions, client, now=at)
    posted = digests(slack)[-1]
    text, blocks = posted["text"], json.dumps(posted["blocks"], ensure_ascii=False)
    assert header_of(posted) == "Spend digest · Tue, Dec 1, 2026" and "(late)" not in text
    november = sum(Decimal(80) if date(2026, 11, d).weekday() >= 5 else Decimal(130) for d in range(1, 31))
    assert "*Yesterday* (Mon, Nov 30)\\n*$130.00*" in blocks
    assert "*December to date*\\n*$7.00*" in blocks and f"November closed at {usd(november)}." in blocks
    assert "*search* $7.00 of $3,000.00" in blocks  # December's budget, December's spend
    assert "November to date" not in blocks
    with context.sessions() as session:
        keys = session.scalars(select(OutboxMessage.dedupe_key).order_by(OutboxMessage.dedupe_key)).all()
        assert keys == ["digest:2026-11-29", "digest:2026-12-01"]
        periods = session.scalars(select(JobClaim.period).where(JobClaim.status == "done")).all()
        assert "2026-11-30T08:00Z" in periods  # claimed and done: no replica tries Nov 30 again


def test_on_the_first_the_endpoint_line_totals_the_month_it_reports(context: Context) -> None:
    """Yesterday was Nov 30: its endpoint cost stands beside November's total, not December's few hours."""
    endpoint = dict(mode="dedicated", project="", feature="", tags="endpoint=llama-prod", uptime=60)
    record(context, [bucket(local(date(2026, 11, 1), 0) + timedelta(hours=h), 4, **endpoint) for h in range(30 * 24 + 9)])
    digest = build_digest(context, due_at=local(date(2026, 12, 1), 9), now=local(date(2026, 12, 1), 9, 0, 1))
    [run] = digest.endpoints
    assert (run.uptime_minutes, run.cost, run.month_cost) == (24 * 60, Decimal(96), Decimal(4 * 24 * 30))
    assert digest.overview.total.month_to_date == Decimal(4 * 9)  # December: 00:00 to 09:00
    everything = json.dumps(digest_blocks(digest), ensure_ascii=False)
    assert "*Dedicated endpoints* (Mon, Nov 30)" in everything
    assert "up 24.0 h, $96.00, 109.09M tokens ($0.88/1M effective) · $2,880.00 in November" in everything


def earlier_today(hours: int = 2) -> tuple[ZoneInfo, time]:
    """A zone and a time of day `hours` ago there, on the same local day: a missed digest that is
    still today's (one from before midnight is skipped). Berlin, unless it is too early there."""
    zone = ZONE if datetime.now(ZONE).hour >= hours + 1 else ZoneInfo("Etc/GMT-12")  # Etc/GMT-12 is UTC+12
    return zone, (datetime.now(zone) - timedelta(hours=hours)).time().replace(second=0, microsecond=0)


def test_the_scheduler_runs_the_digest_at_the_configured_local_time(database_url: str, slack: FakeSlack) -> None:
    """The real scheduled job, on the real clock: the configured time, in the configured zone."""
    zone, due = earlier_today()
    local_now = datetime.now(zone)
    ctx = Context.open(make_settings(database_url, slack, digest_time=due, tz=zone.key))
    try:
        job = scheduler_digest(ctx)
        fire = job.trigger.get_next_fire_time(None, local_now)
        assert fire is not None and (fire.hour, fire.minute) == (due.hour, due.minute)
        assert str(fire.tzinfo) == zone.key
        steady_ledger(ctx, local_now.date())
        assert run_claimed(ctx, job)  # a catch-up tick two hours after the digest's time
        assert not run_claimed(ctx, job)
        send_pending(ctx.sessions, outbox_client(ctx))
    finally:
        ctx.close()
    [posted] = digests(slack)
    assert posted["text"].startswith("Spend digest") and "(late)" in posted["text"]
    unset = Context.open(make_settings(database_url, slack, digest_channel=None))
    assert "digest" not in [j.name for j in scheduled_jobs(unset, renderers())]
    unset.close()


# ----------------------------------------------------------------------------- the chart


def test_the_chart_goes_up_through_slacks_three_upload_calls(context: Context, slack: FakeSlack) -> None:
    steady_ledger(context, date(2026, 11, 25))
    at = local(date(2026, 11, 25), 9, 0, 1)
    tick(context, at)
    assert send_pending(context.sessions, client_for(slack), now=at).sent == 1
    paths = [r.path for r in slack.requests]
    post = paths.index("/api/chat.postMessage")
    get_url = paths.index("/api/files.getUploadURLExternal")
    upload = next(i for i, p in enumerate(paths) if p.startswith("/upload/v1/"))
    complete = paths.index("/api/files.completeUploadExternal")
    assert post < get_url < upload < complete
    assert slack.requests[upload].method == "POST"
    [uploaded] = slack.files.values()
    assert uploaded.completed and uploaded.channels == [CHANNEL]
    assert uploaded.data is not None and uploaded.data.startswith(PNG) and len(uploaded.data) > 10_000
    assert uploaded.filename == "spend-2026-11-25.png"
    assert uploaded.alt_txt.startswith("Daily spend per model this month to Nov 25, stacked, with the forecast")
    [complete_call] = slack.calls_to("files.completeUploadExternal")
    assert complete_call.params["channel_id"] == CHANNEL


# ----------------------------------------------------------------------------- what it says


def test_the_digest_says_what_happened_in_local_days(context: Context, slack: FakeSlack) -> None:
    today = date(2026, 11, 25)
    steady_ledger(context, today - timedelta(days=1))  # up to and including the 23rd
    rows = [
        # 00:00-01:00 in Berlin on the 24th is 23:00 UTC on the 23rd: it belongs to "yesterday".
        bucket(local(today - timedelta(days=1), 0), 40),
        bucket(local(today - timedelta(days=1), 12), 90),
        bucket(local(today - timedelta(days=1), 13), 30, model=SMALL, project="support"),
        bucket(local(today - timedelta(days=1), 14), 5, model="acme/secret-model", priced=False),
        # A dedicated endpoint up all day yesterday.
        bucket(local(today - timedelta(days=1), 10), 144, mode="dedicated", project="", feature="",
               tags="endpoint=llama-prod,hardware=2x_h100", uptime=24 * 60),
    ]
    record(context, rows)
    at = local(today, 9, 0, 1)
    digest = build_digest(context, due_at=local(today, 9), now=at)
    assert digest.yesterday_spend == Decimal(40 + 90 + 30 + 144)
    assert digest.day_before_spend == Decimal(130)  # Monday the 23rd: 100 + 30
    november = sum(Decimal(60 + 20) if date(2026, 11, d).weekday() >= 5 else Decimal(130) for d in range(1, 24))
    assert digest.overview.total.month_to_date == november + Decimal(304)
    assert [e.name for e in digest.endpoints] == ["llama-prod"]
    assert digest.endpoints[0].uptime_minutes == 1440 and digest.endpoints[0].cost == Decimal(144)
    assert digest.movers[0].model == MODEL and digest.movers[0].change > 0

    tick(context, at)
    send_pending(context.sessions, client_for(slack), now=at)
    [posted] = digests(slack)
    text, blocks = posted["text"], json.dumps(posted["blocks"], ensure_ascii=False)
    assert "yesterday $304.00 (▲ 133.8% vs the day before)" in text
    assert "*Yesterday* (Tue, Nov 24)" in blocks and "*November to date*" in blocks
    assert "*search* $" in blocks and "of $3,000.00 · project=search" in blocks and "▓" in blocks
    assert "*Forecast by model*" in blocks and "80%" in blocks
    assert "*Top movers*" in blocks and f"▲ *{MODEL}*" in blocks
    assert "*llama-prod* (meta-llama/Llama-3.3-70B-Instruct-Turbo): up 24.0 h, $144.00" in blocks
    assert "*acme/secret-model* unpriced" in blocks and "no known price" in blocks


def test_the_digest_names_the_batch_suggestions_and_their_saving(context: Context, slack: FakeSlack) -> None:
    today = date(2026, 11, 25)
    steady_ledger(context, today)  # interactive: midday on weekdays, not a candidate
    record(context, [bucket(local(today - timedelta(days=n), 2), 200, project="search", feature="nightly-summaries")
                     for n in range(1, 29)])  # every night at 02:00: off-hours, and all in one hour
    at = local(today, 9, 0, 1)
    with context.sessions() as session:
        advice = advise(session, context.settings, context.catalog, now=at)
    [candidate] = advice.candidates
    assert candidate.feature == "nightly-summaries"
    digest = build_digest(context, due_at=local(today, 9), now=at)
    assert digest.overview.total_saving == advice.total_saving == candidate.monthly_saving
    tick(context, at)
    send_pending(context.sessions, client_for(slack), now=at)
    [posted] = digests(slack)
    blocks = json.dumps(posted["blocks"], ensure_ascii=False)
    assert "*Move to batch*" in blocks and f"*{MODEL}* · project=search · feature=nightly-summaries" in blocks
    assert f"save *{usd(candidate.monthly_saving)}*/month on batch" in blocks
    assert f"*Batch savings on offer*\\n*{usd(advice.total_saving)}*/month" in blocks


def test_a_budget_has_one_forecast_in_the_check_the_digest_and_home(database_url: str, slack: FakeSlack) -> None:
    today = date(2026, 11, 25)
    budgets = [BudgetConfig(name="all", amount=Decimal(9000), scope={}),
               BudgetConfig(name="search", amount=Decimal(3000), scope={"project": "search"}),
               BudgetConfig(name="chat", amount=Decimal(4000), scope={"feature": "chat"})]
    ctx = Context.open(make_settings(database_url, slack, budgets=budgets))
    steady_ledger(ctx, today)
    record(ctx, [bucket(local(today - timedelta(days=n), 15), 400, model=SMALL, project="batch", feature="")
                 for n in range(1, 6)])  # a third series that started five days ago: the models' forecasts
    # summed are not the forecast of their sum, and all spend's is the former (the digest's total)
    at = local(today, 9, 0, 1)
    check_budgets(ctx, now=at, dry_run=False)
    with ctx.sessions() as session:
        stored = {s.name: (s.forecast_nanos, s.low_nanos, s.high_nanos) for s in session.scalars(select(BudgetSnapshot))}
    overview = build_digest(ctx, due_at=local(today, 9), now=at).overview
    home = build_overview(ctx, now=at)
    ctx.close()
    for shown in (overview, home):
        figures = {b.name: (to_nanos(b.forecast.point), to_nanos(b.forecast.low), to_nanos(b.forecast.high))
                   for b in shown.budgets if b.forecast is not None}
        assert figures == stored and len(stored) == 3
        [everything] = [b for b in shown.budgets if b.name == "all"]
        assert everything.forecast == shown.total  # all spend's forecast is the total's, per model summed


def test_an_empty_ledger_gets_a_digest_that_says_how_to_get_usage_in(context: Context, slack: FakeSlack) -> None:
    at = local(date(2026, 11, 25), 9, 0, 1)
    assert tick(context, at)
    assert send_pending(context.sessions, client_for(slack), now=at).sent == 1
    [posted] = digests(slack)
    blocks = json.dumps(posted["blocks"], ensure_ascii=False)
    assert "no usage recorded yet" in posted["text"]
    assert "No usage recorded yet" in blocks
    assert "*Push*" in blocks and "/v1/usage" in blocks and "*Pull*" in blocks and "[[sources]]" in blocks
    assert "*Import*" in blocks and "budget-guard import" in blocks
    assert "*search* $3,000.00" in blocks  # the budgets waiting for usage
    assert not slack.calls_to("files.getUploadURLExternal")  # no chart of nothing


def test_a_private_channel_the_bot_is_not_in_fails_the_digest_until_the_operator_retries(
        context: Context, slack: FakeSlack, caplog: pytest.LogCaptureFixture) -> None:
    from jobs.runtime.outbox_operator import retry

    steady_ledger(context, date(2026, 11, 25))
    slack.add_channel(CHANNEL, is_member=False, is_private=True)
    at = local(date(2026, 11, 25), 9, 0, 1)
    tick(context, at)
    report = send_pending(context.sessions, client_for(slack), now=at)
    assert (report.sent, report.failed) == (0, 1) and not digests(slack)
    with context.sessions() as session:
        row = session.scalar(select(OutboxMessage).where(OutboxMessage.kind == "digest"))
        assert row is not None and (row.status, row.failed_reason) == ("failed", "not_in_channel")
    # No OPS_CHANNEL and no admins: the operator hears it in the log, once, in words.
    told = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(told) == 1 and f"I cannot post to channel {CHANNEL}: the bot was removed from it" in told[0]
    assert send_pending(context.sessions, client_for(slack), now=at + timedelta(minutes=15)).sent == 0  # not retried
    assert len(slack.calls_to("chat.postMessage")) == 1
    # Someone invites the bot and the operator retries it: posted once, chart included.
    slack.add_channel(CHANNEL, is_member=True)
    with context.sessions() as session, session.begin():
        retry(session, [row.id], now=at + timedelta(minutes=20))
    for minutes in (20, 30):
        send_pending(context.sessions, client_for(slack), now=at + timedelta(minutes=minutes))
    assert len(digests(slack)) == 1 and len(slack.calls_to("files.completeUploadExternal")) == 1


# ----------------------------------------------------------------------------- 200 models


def big_ledger(context: Context, until: date, models: int = 200, days: int = 40) -> list[str]:
    names = [f"vendor-{i % 7}/model-{i:03d}-instruct" for i in range(models)]
    rows = []
    for n in range(1, days + 1):
        day = until - timedelta(days=n)
        for i, name in enumerate(names):
            rows.append(bucket(local(day, 12), Decimal(5 + (i * 37) % 200) + Decimal(n % 7),
                               model=name, project=f"project-{i % 10}"))
    record(context, rows)
    return names


def test_a_200_model_digest_stays_inside_every_block_kit_limit(database_url: str, slack: FakeSlack) -> None:
    budgets = [BudgetConfig(name=f"budget-{i:02d}-" + "x" * 40, amount=Decimal(1000 + i),
                            scope={"project": f"project-{i % 10}"}) for i in range(60)]
    ctx = Context.open(make_settings(database_url, slack, budgets=budgets))
    try:
        big_ledger(ctx, date(2026, 11, 25))
        at = local(date(2026, 11, 25), 9, 0, 1)
        assert tick(ctx, at)
        report = send_pending(ctx.sessions, client_for(slack), now=at)
        assert report.sent == 1, report.errors  # the fake refuses invalid_blocks, as Slack does
    finally:
        ctx.close()
    [posted] = digests(slack)
    blocks = posted["blocks"]
    assert len(blocks) <= MAX_BLOCKS
    assert len(posted["text"]) <= 3000
    for block in blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= MAX_HEADER_CHARS
        if block["type"] == "section":
            assert len(block.get("text", {}).get("text", "")) <= MAX_SECTION_CHARS
            assert len(block.get("fields", [])) <= 10
            assert all(len(f["text"]) <= 2000 for f in block.get("fields", []))
        if block["type"] == "context":
            assert len(block["elements"]) <= 10
    everything = json.dumps(blocks, ensure_ascii=False)
    assert "…and 190 more models" in everything
    assert everything.count("*budget-") == 60  # all 60 budgets, packed into sections
    assert len(slack.files) == 1


# ----------------------------------------------------------------------------- the command


def test_digest_dry_run_prints_and_writes_json_and_png_and_posts_nothing(database_url: str, slack: FakeSlack,
                                                                          tmp_path: Path, monkeypatch,
                                                                          capsys) -> None:  # type: ignore[no-untyped-def]
    ctx = Context.open(make_settings(database_url, slack))
    steady_ledger(ctx, datetime.now(ZONE).date() + timedelta(days=1))
    ctx.close()
    for key, value in (("DATABASE_URL", database_url), ("SLACK_BOT_TOKEN", BOT_TOKEN),
                       ("SLACK_API_URL", slack.url), ("DIGEST_CHANNEL", CHANNEL), ("TZ", "Europe/Berlin")):
        monkeypatch.setenv(key, value)
    out = tmp_path / "out"
    assert main(["digest", "--dry-run", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("Spend digest · ") and "*Forecast by model*" in printed and "nothing was posted" in printed
    saved = json.loads((out / "digest.json").read_text())
    assert saved["text"].startswith("Spend digest") and saved["blocks"][0]["type"] == "header"
    assert (out / "chart.png").read_bytes().startswith(PNG)
    assert slack.calls == []


def test_digest_command_posts_now_through_the_claim_and_the_outbox(database_url: str, slack: FakeSlack,
                                                                    monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    ctx = Context.open(make_settings(database_url, slack))
    steady_ledger(ctx, datetime.now(ZONE).date() + timedelta(days=1))
    for key, value in (("DATABASE_URL", database_url), ("SLACK_BOT_TOKEN", BOT_TOKEN),
                       ("SLACK_API_URL", slack.url), ("DIGEST_CHANNEL", CHANNEL), ("TZ", "Europe/Berlin")):
        monkeypatch.setenv(key, value)
    assert main(["digest"]) == 0
    assert "Digest posted to C0DIGEST" in capsys.readouterr().out
    assert main(["digest"]) == 0  # asked twice, posted twice: each run is its own period
    assert len(digests(slack)) == 2 and len(slack.calls_to("files.completeUploadExternal")) == 2
    with ctx.sessions() as session:
        periods = session.scalars(select(JobClaim.period).where(JobClaim.job == "digest")).all()
        assert len(periods) == 2 and all(p.startswith("manual-") for p in periods)
        keys = session.scalars(select(OutboxMessage.dedupe_key)).all()
        assert all(k.startswith("digest:manual-") for k in keys)
    ctx.close()


def test_digest_command_without_a_channel_says_so(database_url: str, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert main(["digest"]) == 2
    assert "DIGEST_CHANNEL is not set" in capsys.readouterr().err
