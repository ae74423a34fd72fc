"""Faults: a hanging usage source, Slack down for ten minutes, the database restarted under load,
`serve` killed in the middle of a digest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from slack_sdk import WebClient
from sqlalchemy import select

from db.engine import make_engine, make_sessionmaker
from db.models import OutboxMessage, SourceState
from db.totals import totals
from jobs.config.context import Context
from jobs.config.sections import Source
from jobs.config.settings import Settings
from jobs.runtime.outbox import enqueue, send_pending
from jobs.usage.pull import pull_sources
from jobs.usage.sources import RetryPolicy
from pricing.catalog import load_catalog
from tests.conftest import PG_URL
from tests.fakes.openai_usage import FakeOpenAIUsage, UsageEvent
from tests.fakes.slack_api import FakeSlack
from tests.harness import BOT_TOKEN, SIGNING_SECRET, signed_headers, slash_command_body
from tests.processes import ServeProcess, wait_for_loop_passes, wait_until
from tests.test_digest_replicas import CHANNEL as DIGEST_CHANNEL
from tests.test_digest_replicas import fill

NOW = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)


@contextmanager
def sessions_of(url: str) -> Iterator:  # type: ignore[type-arg]
    engine = make_engine(url)
    try:
        yield make_sessionmaker(engine)
    finally:
        engine.dispose()


def test_a_hanging_source_times_out_and_the_others_continue(engine, sessions, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    events = [UsageEvent(timestamp=NOW - timedelta(hours=3), model="gpt-4o", input_tokens=1000, output_tokens=100)]
    with FakeOpenAIUsage(admin_key="sk-good", events=events, clock=NOW.timestamp) as good, \
            FakeOpenAIUsage(admin_key="sk-hang", events=events, clock=NOW.timestamp) as hanging:
        hanging.hang_next(5, times=10)
        monkeypatch.setenv("GOOD_KEY", "sk-good")
        monkeypatch.setenv("HANG_KEY", "sk-hang")
        settings = Settings(sources=[
            Source(name="stuck", kind="openai_usage", base_url=hanging.url, api_key_env="HANG_KEY", timeout_seconds=0.3),
            Source(name="fine", kind="openai_usage", base_url=good.url, api_key_env="GOOD_KEY", timeout_seconds=5),
        ])
        started = time.monotonic()
        outcomes = pull_sources(Context(settings, engine, sessions, load_catalog()), now=NOW,
                                retry=RetryPolicy(attempts=2, sleep=lambda s: None))
        elapsed = time.monotonic() - started
    assert [(o.source, o.ok) for o in outcomes] == [("stuck", False), ("fine", True)]
    assert "timed out" in (outcomes[0].error or "")
    assert elapsed < 4  # two 0.3 s timeouts, not five-second hangs
    with sessions() as session:
        stuck = session.get(SourceState, "stuck")
        assert stuck is not None and stuck.last_success is None and "timed out" in (stuck.last_error or "")
        [row] = totals(session, None, None, "model")
        assert (row.key, row.input_tokens) == ("openai/gpt-4o", 1000)  # OpenAI reports "gpt-4o"; it counts as the catalog names it


def test_slack_down_for_ten_minutes_then_everything_posts_once(sessions) -> None:  # type: ignore[no-untyped-def]
    with FakeSlack(token=BOT_TOKEN) as slack:
        client = WebClient(token=BOT_TOKEN, base_url=slack.url, retry_handlers=[], timeout=2)
        with sessions() as session, session.begin():
            for i in range(5):
                enqueue(session, key=f"alert:k{i}", kind="alert", channel="C0ALERTS", text=f"alert {i}", now=NOW)
        slack.set_down(True, status=None)
        minute = NOW
        while minute < NOW + timedelta(minutes=10):
            assert send_pending(sessions, client, now=minute).sent == 0
            minute += timedelta(seconds=30)
        with sessions() as session:
            assert {r.status for r in session.scalars(select(OutboxMessage))} == {"pending"}
        slack.set_down(False)
        sent = 0
        while minute < NOW + timedelta(minutes=30):
            sent += send_pending(sessions, client, now=minute).sent
            minute += timedelta(seconds=30)
        assert sent == 5
        assert sorted(m["text"] for m in slack.messages) == [f"alert {i}" for i in range(5)]


def _restart_postgres() -> None:
    version = os.listdir("/etc/postgresql")[0]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"], check=True,
                   capture_output=True, timeout=60)


@pytest.mark.skipif(not PG_URL or not os.path.isdir("/etc/postgresql"), reason="needs the local PostgreSQL server")
@pytest.mark.restarts_postgres
def test_database_restart_under_load_fails_clearly_and_loses_nothing(database_url: str, tmp_path: Path) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("this fault is about the PostgreSQL server")
    slack = FakeSlack(token=BOT_TOKEN).start()
    env = {"DATABASE_URL": database_url, "INGEST_TOKENS": "load=tok_load", "LOG_LEVEL": "WARNING",
           "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": slack.url}
    statuses: list[int] = []
    health: list[int] = []
    quotes: list[int] = []
    done = threading.Event()
    batches = [[{"id": f"ev-{b}-{i}", "created": int(time.time()) - 600, "model": "arcee-ai/maestro-reasoning",
                 "usage": {"prompt_tokens": 3000, "completion_tokens": 1000}} for i in range(50)] for b in range(40)]
    with ServeProcess(env, tmp_path, "--no-scheduler") as serve:
        def pusher() -> None:
            with httpx.Client(timeout=10) as client:
                for batch in batches:
                    body = "\n".join(json.dumps(r) for r in batch)
                    for _ in range(200):  # a client that retries until the ledger takes the batch
                        try:
                            response = client.post(f"{serve.url}/v1/usage", content=body,
                                                   headers={"Authorization": "Bearer tok_load"})
                            statuses.append(response.status_code)
                            if response.status_code == 200:
                                break
                            assert response.status_code == 503 and "retry later" in response.json()["error"]
                        except httpx.TransportError:
                            statuses.append(0)
                        time.sleep(0.1)
                    time.sleep(0.05)

        def watcher() -> None:  # /healthz and /costquote while the database goes away and comes back
            with httpx.Client(timeout=10) as client:
                while not done.is_set():
                    try:
                        health.append(client.get(f"{serve.url}/healthz").status_code)
                    except httpx.TransportError:
                        health.append(0)
                    body = slash_command_body("maestro 3k/1k x 2M/mo")
                    answer = client.post(f"{serve.url}/slack/events", content=body, headers=signed_headers(body))
                    quotes.append(answer.status_code if "$12,000.00" in answer.text else -answer.status_code)
                    time.sleep(0.05)

        thread, watching = threading.Thread(target=pusher), threading.Thread(target=watcher)
        thread.start()
        watching.start()
        time.sleep(0.5)
        _restart_postgres()
        thread.join(timeout=120)
        time.sleep(0.5)
        done.set()
        watching.join(timeout=30)
        assert not thread.is_alive()
        assert httpx.get(f"{serve.url}/healthz").status_code == 200  # recovered
        assert serve.stop() == 0
    slack.stop()
    assert 503 in health and health[-1] == 200  # the outage showed as unhealthy, then healthy again
    assert set(quotes) == {200}  # quoting needs no database: answered right through the restart
    sessions = make_sessionmaker(make_engine(database_url))
    with sessions() as session:
        [row] = totals(session, None, None, "model")
    assert (row.requests, row.input_tokens, row.output_tokens) == (2000, 6_000_000, 2_000_000)  # each record once
    assert statuses.count(200) == 40
    assert len(statuses) > 40, "the restart did not hit any request; nothing was tested"
    assert 500 not in statuses  # failures were 503 "retry later" or a refused connection, never a 500


@pytest.mark.parametrize("hung", ["chat.postMessage", "files.getUploadURLExternal"])
def test_serve_killed_in_the_middle_of_a_digest_posts_it_once_after_restart(database_url: str, tmp_path: Path,
                                                                          hung: str) -> None:
    """SIGKILL while Slack holds the digest's post (Slack still takes it) or its chart upload."""
    from tests.test_digest import earlier_today

    fill(database_url)
    zone, due = earlier_today()  # missed earlier today: posted late (a missed day already over is skipped)
    with FakeSlack(token=BOT_TOKEN) as slack:
        env = {"DATABASE_URL": database_url, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
               "SLACK_API_URL": slack.url, "DIGEST_CHANNEL": DIGEST_CHANNEL, "TZ": zone.key,
               "DIGEST_TIME": due.strftime("%H:%M"),
               "CATCH_UP_SECONDS": "0.5", "OUTBOX_INTERVAL_SECONDS": "0.3", "OUTBOX_LEASE_SECONDS": "1"}
        slack.hang_next(2, hung)
        serve = ServeProcess(env, tmp_path).start()
        assert wait_until(lambda: len(slack.calls_to(hung)) == 1, timeout=60), serve.log()[-3000:]
        assert serve.stop(signal.SIGKILL) == -signal.SIGKILL  # mid-call: nothing recorded after it
        with sessions_of(database_url) as sessions, sessions() as session:
            [row] = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "digest"))
            assert row.status == "sending"
        landed = {"chat.postMessage": lambda: len(slack.messages) == 1, "files.getUploadURLExternal": lambda: slack.files}
        assert wait_until(landed[hung], timeout=10)  # Slack finished the call the dead process made

        with ServeProcess(env, tmp_path) as restarted:
            assert wait_until(lambda: len(slack.calls_to("files.completeUploadExternal")) == 1, timeout=60), \
                restarted.log()[-3000:]
            assert wait_for_loop_passes(restarted)  # time for a second post
            assert restarted.stop() == 0
        [digest] = [m for m in slack.messages if m["channel"] == DIGEST_CHANNEL]
        assert "(late)" in digest["text"] and len(slack.calls_to("chat.postMessage")) == 1
        [chart] = [f for f in slack.files.values() if f.completed]  # an upload URL never completed shows nowhere
        assert chart.channels == [DIGEST_CHANNEL] and chart.data.startswith(b"\x89PNG")
        with sessions_of(database_url) as sessions, sessions() as session:
            [row] = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "digest"))
            assert (row.status, row.ts, row.file_posted) == ("sent", digest["ts"], True)
