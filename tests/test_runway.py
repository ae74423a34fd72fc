"""Prepaid runway: the balance, the spend since, the forecast pace; `/budget credit`, the CLI, alerts."""

from __future__ import annotations

import json
import threading
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.app import create_app
from bot.cli import main
from bot.server import create_server
from bot.views.alerts import alert_message
from db.models import Alert, PrepaidEntry
from jobs.budgets.check import check_budgets
from jobs.config.context import Context
from jobs.config.sections import Prepaid, Topup
from jobs.config.settings import ConfigError, Settings, load_settings
from jobs.digest.daily import build_digest
from jobs.digest.overview import build_overview
from jobs.forecast.runway import CreditError, current_runway, parse_credit_amount
from jobs.runtime.outbox import send_pending
from jobs.runtime.scheduler import outbox_client
from tests.buckets import add_buckets, spend_bucket
from tests.fakes.slack_api import FakeSlack
from tests.harness import ServerThread, post_slash_command, slack_settings
from tests.processes import wait_until

MODEL = "meta-llama/Llama-3.3-70B-Instruct-Turbo"  # $0.88 per 1M tokens
HOURLY = Decimal("4.40")  # 5M input tokens an hour: $105.60 a day
NOW = datetime(2026, 11, 15, 12, tzinfo=timezone.utc)


def make_settings(database_url: str, slack: FakeSlack, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(alert_channel="C0ALERTS", admins=["U0ADMIN"])
    values.update(overrides)
    return slack_settings(database_url, slack, **values)


def steady_spend(context: Context, first: datetime, until: datetime, hourly: Decimal = HOURLY) -> None:
    """One bucket an hour from `first` up to (not including) `until`, each costing `hourly`."""
    rows, hour = [], first
    while hour < until:
        rows.append(spend_bucket(hour, hourly, model=MODEL, project="search", requests=10))
        hour += timedelta(hours=1)
    add_buckets(context.sessions, rows)


def steady_ledger(database_url: str, slack: FakeSlack) -> str:
    """$105.60 a day, every day, from September 1 to Nov 15 12:00 UTC (NOW)."""
    context = Context.open(make_settings(database_url, slack))
    steady_spend(context, datetime(2026, 9, 1, tzinfo=timezone.utc), NOW)
    context.close()
    return database_url


@pytest.fixture
def ledger(database_url: str, slack: FakeSlack) -> str:
    return steady_ledger(database_url, slack)


@pytest.fixture
def sqlite_ledger(sqlite_url: str, slack: FakeSlack) -> str:
    """The same ledger on SQLite only, for tests of the arithmetic and the views."""
    return steady_ledger(sqlite_url, slack)


def test_runway_of_a_steady_ledger_lands_on_the_known_date(ledger: str, slack: FakeSlack) -> None:
    # $2,000 stated for Nov 1: 14.5 days at $105.60 spent ($1,531.20), $468.80 left. The rest of
    # today takes $52.80, then $416.00 / $105.60 = 3.94 days: empty late on Nov 19.
    context = Context.open(make_settings(ledger, slack, prepaid=Prepaid(balance=Decimal(2000), since=date(2026, 11, 1))))
    runway = current_runway(context, now=NOW)
    context.close()
    assert runway is not None
    assert runway.spent == Decimal("1531.20") and runway.left == Decimal("468.80")
    assert runway.per_day == pytest.approx(Decimal("105.60"), abs=Decimal("0.01"))
    expected = NOW + timedelta(days=0.5 + 416 / 105.6)
    assert runway.empty_at is not None and abs(runway.empty_at - expected) < timedelta(minutes=5)
    assert runway.local_empty_day == date(2026, 11, 19)
    # The 80% range brackets it (2.5 months of history: the forecast widens its interval to a prior).
    assert runway.earliest is not None and runway.latest is not None
    assert runway.earliest < runway.empty_at < runway.latest
    assert runway.latest - runway.earliest < timedelta(days=3)


def test_runway_past_the_month_end_counts_top_ups_on_their_day(sqlite_ledger: str, slack: FakeSlack) -> None:
    # $5,000 from Nov 1 and $211.20 (two days) topped up on Nov 25, one already on Nov 10:
    # $5,000 + $300 - $1,531.20 = $3,768.80; the rest of November takes $52.80 + 15 x $105.60;
    # $2,132.00 is 20.19 days into December, and the top-up ahead two more: Dec 23.
    prepaid = Prepaid(balance=Decimal(5000), since=date(2026, 11, 1),
                      topups=[Topup(amount=Decimal(300), on=date(2026, 11, 10)),
                              Topup(amount=Decimal("211.20"), on=date(2026, 11, 25))])
    context = Context.open(make_settings(sqlite_ledger, slack, prepaid=prepaid))
    runway = current_runway(context, now=NOW)
    context.close()
    assert runway is not None and runway.topped_up == Decimal(300) and runway.left == Decimal("3768.80")
    assert [(t.at.date(), t.amount) for t in runway.scheduled] == [(date(2026, 11, 25), Decimal("211.20"))]
    rest = Decimal("3768.80") - Decimal("52.80") - 15 * Decimal("105.60") + Decimal("211.20")
    expected = datetime(2026, 12, 1, tzinfo=timezone.utc) + timedelta(days=float(rest / Decimal("105.60")))
    assert runway.empty_at is not None and abs(runway.empty_at - expected) < timedelta(minutes=30)
    assert runway.local_empty_day == date(2026, 12, 23)


def test_a_noisy_ledger_gives_a_range_around_the_date(sqlite_url: str, slack: FakeSlack) -> None:
    context = Context.open(make_settings(sqlite_url, slack, prepaid=Prepaid(balance=Decimal(3000),
                                                                              since=date(2026, 11, 1))))
    day = datetime(2026, 9, 1, tzinfo=timezone.utc)
    while day < NOW:  # alternating cheap and dear days
        steady_spend(context, day, min(day + timedelta(days=1), NOW),
                     Decimal("3.00") if day.toordinal() % 3 else Decimal("7.00"))
        day += timedelta(days=1)
    runway = current_runway(context, now=NOW)
    context.close()
    assert runway is not None and runway.empty_at is not None
    assert runway.earliest is not None and runway.latest is not None
    assert runway.earliest < runway.empty_at < runway.latest


def test_the_cli_prints_the_runway_and_its_json(sqlite_ledger: str, slack: FakeSlack, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import bot.commands.runway as command

    config = tmp_path / "budget-guard.toml"
    config.write_text("[prepaid]\nbalance = 2000\nsince = 2026-11-01\n")
    monkeypatch.setenv("BUDGET_GUARD_CONFIG", str(config))
    monkeypatch.setenv("DATABASE_URL", sqlite_ledger)
    monkeypatch.setattr(command, "utc_now", lambda: NOW)
    assert main(["runway", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert Decimal(out["left"]) == Decimal("468.80") and Decimal(out["spent"]) == Decimal("1531.20")
    assert out["empty_on"] == "2026-11-19" and out["interval"] == 0.8
    assert out["stated"] == {"amount": "2000", "at": "2026-11-01T00:00:00+00:00", "by": "budget-guard.toml"}
    assert main(["runway"]) == 0
    text = capsys.readouterr().out
    assert "left                  $468.80" in text and "runs out              Thu 2026-11-19" in text
    config.write_text("")
    assert main(["runway"]) == 1
    assert "No prepaid balance is recorded" in capsys.readouterr().err


@pytest.mark.parametrize(("table", "line"), [
    ("balance = -5\nsince = 2026-11-01", "prepaid.balance: Input should be greater than or equal to 0"),
    ("balance = 5e9\nsince = 2026-11-01", "prepaid.balance: the balance over $100,000,000 is implausible"),
    ("balance = 10.005\nsince = 2026-11-01", "prepaid.balance: the balance is dollars and cents"),
    ("balance = 10\nsince = 2026-11-01\n[[prepaid.topups]]\namount = 5\non = 2026-10-01",
     "PREPAID: the top-up on 2026-10-01 is before since = 2026-11-01"),
    ("balance = 10\nsince = 2026-11-01\n[[prepaid.topups]]\namount = 0\non = 2026-11-02",
     "prepaid.topups.0.amount: Input should be greater than 0"),
])
def test_a_wrong_prepaid_table_is_one_line(tmp_path: Path, table: str, line: str) -> None:
    config = tmp_path / "budget-guard.toml"
    config.write_text(f"[prepaid]\n{table}\n")
    with pytest.raises(ConfigError) as error:
        load_settings(config)
    assert line in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(("text", "fragment"), [
    ("-5", "cannot be negative"), ("lots", "must be dollars like 500"), ("2e9", "implausible"),
    ("10.001", "dollars and cents"), ("nan", "a number of dollars"), ("0", None),
])
def test_credit_amounts(text: str, fragment: str | None) -> None:
    if fragment is None:
        assert parse_credit_amount(text, allow_zero=True) == Decimal(0)
        with pytest.raises(CreditError, match="more than \\$0"):
            parse_credit_amount(text, allow_zero=False)
        return
    with pytest.raises(CreditError, match=fragment):
        parse_credit_amount(text, allow_zero=True)


def test_budget_credit_admins_only_answers_after_the_ack(database_url: str, slack: FakeSlack) -> None:
    context = Context.open(make_settings(database_url, slack))
    with ServerThread(create_server(context, create_app(context))) as server:
        def say(text: str, user: str, key: str) -> dict[str, Any]:
            response = post_slash_command(server.url, text, command="/budget", user_id=user,
                                          response_url=slack.response_url(key))
            assert response.status_code == 200
            return response.json() if response.content else {}

        def answered(key: str) -> str:
            assert wait_until(lambda: any(p.key == key for p in slack.response_posts), timeout=20)
            return json.dumps(next(p for p in slack.response_posts if p.key == key).payload)

        # Bad input is answered in the ack itself; the rest is acknowledged empty and answered after.
        for text, fragment in [("credit set -500", "cannot be negative"), ("credit set 1e12", "implausible"),
                               ("credit add", "give one amount"), ("credit spend 5", "unknown credit action")]:
            assert fragment in say(text, "U0ADMIN", "bad")["text"], text
        assert say("credit", "U0ANYONE", "show") == {}
        assert "No prepaid balance is recorded" in answered("show")
        assert say("credit set 500", "U0ANYONE", "nonadmin") == {}
        assert "only budget admins can change the prepaid balance" in answered("nonadmin")
        assert say("credit add 200", "U0ADMIN", "early") == {}
        assert "there is no prepaid balance to top up yet" in answered("early")
        assert not any(p.key == "bad" for p in slack.response_posts)
        with context.sessions() as session:
            assert session.scalars(select(PrepaidEntry)).all() == []

        assert say("credit set $1,000", "U0ADMIN", "set") == {}  # acknowledged empty; the answer follows
        assert "Balance set to $1,000.00" in answered("set")
        assert say("credit add 200", "U0ADMIN", "add") == {}
        added = answered("add")
        assert "Top-up of $200.00 recorded" in added and "$1,200.00 left" in added
    with context.sessions() as session:
        assert [(e.kind, e.amount, e.created_by) for e in session.scalars(select(PrepaidEntry))] == [
            ("set", Decimal("1000.00"), "U0ADMIN"), ("topup", Decimal("200.00"), "U0ADMIN")]
    context.close()


def test_digest_and_home_show_the_runway(sqlite_ledger: str, slack: FakeSlack) -> None:
    from bot.views.digest import digest_blocks, digest_text
    from bot.views.home import home_blocks

    context = Context.open(make_settings(sqlite_ledger, slack, prepaid=Prepaid(balance=Decimal(2000),
                                                                            since=date(2026, 11, 1))))
    digest = build_digest(context, now=NOW)
    overview = build_overview(context, now=NOW)
    context.close()
    assert digest.overview.runway is not None and overview.runway is not None
    digest_json = json.dumps(digest_blocks(digest), ensure_ascii=False)
    assert "*Prepaid balance* $468.80 left" in digest_json and "runs out around *Thu, Nov 19*" in digest_json
    assert "(80%: Nov 19–Nov 20)" in digest_json
    assert "runs out around Thu, Nov 19" in digest_text(digest)
    home_json = json.dumps(home_blocks(overview))
    assert "Prepaid balance" in home_json and "runs out around *Thu, Nov 19*" in home_json


def test_runway_alerts_once_under_a_week_and_again_under_a_day_across_replicas(ledger: str, slack: FakeSlack) -> None:
    settings = make_settings(ledger, slack, prepaid=Prepaid(balance=Decimal(2000), since=date(2026, 11, 1)))
    replicas = [Context.open(settings), Context.open(settings)]

    def check_on_both(now: datetime) -> list[Any]:
        barrier, posted = threading.Barrier(2), []

        def run(ctx: Context) -> None:
            barrier.wait()
            posted.extend(check_budgets(ctx, now=now, render=alert_message))
            send_pending(ctx.sessions, outbox_client(ctx), now=now)

        threads = [threading.Thread(target=run, args=(ctx,)) for ctx in replicas]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return posted

    def runway_messages() -> list[dict[str, Any]]:
        return [m for m in slack.messages if "prepaid balance" in m["text"].lower()]

    first = check_on_both(NOW)  # 4.4 days left
    assert [(d.kind, d.threshold) for d in first] == [("runway", "7")]
    assert check_on_both(NOW + timedelta(hours=1)) == []
    [alert] = runway_messages()
    assert "runs out in about 4 days, around Thu, Nov 19" in alert["text"]
    assert "$468.80 left of $2,000.00" in alert["text"]

    later = NOW + timedelta(days=4)  # Nov 19 12:00: the spend went on, less than a day is left
    steady_spend(replicas[0], NOW, later)
    second = check_on_both(later)
    assert [(d.kind, d.threshold) for d in second] == [("runway", "1")]
    assert check_on_both(later + timedelta(minutes=30)) == []
    alerts = runway_messages()
    assert len(alerts) == 2 and "runs out within a day, around Thu" in alerts[1]["text"]
    assert alerts[1]["thread_ts"] == alerts[0]["ts"]

    with replicas[0].sessions() as session, session.begin():  # a top-up: a new balance, a new episode
        session.add(PrepaidEntry(kind="topup", amount=Decimal(300), effective_at=later, created_by="U0ADMIN"))
    assert [(d.kind, d.threshold) for d in check_on_both(later + timedelta(hours=1))] == [("runway", "7")]
    with replicas[0].sessions() as session:
        assert sorted(a.threshold for a in session.scalars(select(Alert).where(Alert.kind == "runway"))) == ["1", "7", "7"]
    for ctx in replicas:
        ctx.close()
