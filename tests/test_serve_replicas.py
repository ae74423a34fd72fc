"""Two real `serve` processes on one database: each alert posted once; a restart posts nothing
new; SIGTERM stops cleanly."""

from __future__ import annotations

import signal
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import httpx
from sqlalchemy import func, select

from db.engine import make_engine, make_sessionmaker
from db.models import JobClaim, OutboxMessage
from tests.buckets import add_buckets, spend_bucket
from tests.fakes.slack_api import FakeSlack
from tests.harness import BOT_TOKEN, SIGNING_SECRET
from tests.processes import ServeProcess, wait_until


def environment(database_url: str, slack: FakeSlack, tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "budget-guard.toml"
    config.write_text('alert_channel = "C0ALERTS"\n[[budgets]]\nname = "team"\namount = 100\n'
                      'scope = { project = "search" }\nforecast = false\n')
    return {"DATABASE_URL": database_url, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.url, "BUDGET_GUARD_CONFIG": str(config), "CHECK_CRON": "* * * * * *",
            "CATCH_UP_SECONDS": "0.5", "OUTBOX_INTERVAL_SECONDS": "0.3", "LOG_LEVEL": "INFO"}


def record_spend(database_url: str, dollars: Decimal, source: str) -> None:
    sessions = make_sessionmaker(make_engine(database_url))
    add_buckets(sessions, [spend_bucket(datetime.now(timezone.utc) - timedelta(hours=1), dollars, exact=False,
                                        source=source, project="search", requests=1)])


def wait_for_more_checks(database_url: str, more: int = 2) -> None:
    """Until `more` further check periods have run (CHECK_CRON fires each second) and the outbox has
    nothing left to send: time for any duplicate to have been posted."""
    engine = make_engine(database_url)

    def done() -> int:
        with engine.connect() as connection:
            return connection.scalar(select(func.count()).select_from(JobClaim)
                                     .where(JobClaim.job == "check", JobClaim.status == "done")) or 0

    def outbox_idle() -> bool:
        with engine.connect() as connection:
            return not connection.scalar(select(func.count()).select_from(OutboxMessage)
                                         .where(OutboxMessage.status != "sent"))

    try:
        start = done()
        assert wait_until(lambda: done() >= start + more and outbox_idle(), timeout=30)
    finally:
        engine.dispose()


def test_two_serve_processes_post_each_alert_once(database_url: str, slack: FakeSlack, tmp_path: Path) -> None:
    env = environment(database_url, slack, tmp_path)
    record_spend(database_url, Decimal(85), "a")  # 85% of $100: the 50% and 80% thresholds
    with ServeProcess(env, tmp_path) as first, ServeProcess(env, tmp_path) as second:
        assert wait_until(lambda: len(slack.calls_to("chat.postMessage")) >= 1, timeout=30)
        wait_for_more_checks(database_url)  # several more ticks of both schedulers
        messages = [m for m in slack.messages if m["channel"] == "C0ALERTS"]
        assert len(messages) == 1 and "85% used" in messages[0]["text"]  # one message for both thresholds
        record_spend(database_url, Decimal(20), "b")  # 105%: the 100% threshold, while both run
        # CHECK_CRON fires each second: the next period's check, on one of the two, sees it.
        assert wait_until(lambda: len(slack.calls_to("chat.postMessage")) >= 2, timeout=75)
        wait_for_more_checks(database_url)
        messages = [m for m in slack.messages if m["channel"] == "C0ALERTS"]
        assert len(messages) == 2 and "105% used" in messages[1]["text"]
        assert messages[1]["thread_ts"] == messages[0]["ts"]  # later thresholds reply in the first's thread
        assert first.stop() == 0 and second.stop() == 0  # SIGTERM: clean exit
        assert '"stopped"' in first.log() or "stopped" in first.log()

    with ServeProcess(env, tmp_path) as restarted:  # a restart posts nothing it already posted
        wait_for_more_checks(database_url)
        assert len([m for m in slack.messages if m["channel"] == "C0ALERTS"]) == 2
        health = httpx.get(f"{restarted.url}/healthz").json()
        assert health == {"status": "ok", "database": "ok", "slack": "ok"}
        assert restarted.stop(signal.SIGTERM) == 0
    assert len(slack.calls_to("chat.postMessage")) == 2


def test_sigterm_mid_post_finishes_that_post_releases_the_rest_and_a_restart_posts_each_once(
        database_url: str, slack: FakeSlack, tmp_path: Path) -> None:
    from jobs.runtime.outbox import enqueue

    sessions = make_sessionmaker(make_engine(database_url))
    with sessions() as session, session.begin():
        for n in range(5):
            enqueue(session, key=f"alert:queued-{n}", kind="alert", channel="C0ALERTS", text=f"queued {n}")
    env = environment(database_url, slack, tmp_path)
    slack.hang_next(3, "chat.postMessage")  # Slack is slow with the first post
    serve = ServeProcess(env, tmp_path).start()
    assert wait_until(lambda: len(slack.calls_to("chat.postMessage")) == 1, timeout=30)
    started = time.monotonic()
    assert serve.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 10  # within `docker stop`'s default grace
    assert len(slack.calls_to("chat.postMessage")) == 1  # nothing new was started after SIGTERM
    with sessions() as session:
        from sqlalchemy import select

        from db.models import OutboxMessage

        statuses = sorted(row.status for row in session.scalars(select(OutboxMessage)))
    assert statuses == ["pending"] * 4 + ["sent"]  # the one under way finished; the rest went back
    with ServeProcess(env, tmp_path) as restarted:
        assert wait_until(lambda: len(slack.messages) == 5, timeout=30)
        wait_for_more_checks(database_url)
        assert restarted.stop() == 0
    assert sorted(m["text"] for m in slack.messages) == [f"queued {n}" for n in range(5)]
