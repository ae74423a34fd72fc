"""Exactly-once machinery: job claims and the Slack outbox, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from slack_sdk import WebClient
from sqlalchemy import select, update

from db.models import OutboxMessage
from jobs.runtime import claims
from jobs.runtime.outbox import SENDING_LEASE, enqueue, send_pending
from tests.fakes.slack_api import FakeSlack
from tests.harness import BOT_TOKEN

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def client(slack: FakeSlack) -> WebClient:
    return WebClient(token=BOT_TOKEN, base_url=slack.url, retry_handlers=[], timeout=5)


def queue(sessions, key: str = "alert:a:2026-11:threshold:50", **kwargs) -> bool:  # type: ignore[no-untyped-def]
    with sessions() as session, session.begin():
        return enqueue(session, key=key, kind="alert", channel=kwargs.pop("channel", "C0ALERTS"),
                       text=kwargs.pop("text", "Budget a: 50% used"), now=kwargs.pop("now", NOW), **kwargs)


def posted(slack: FakeSlack, channel: str = "C0ALERTS") -> list[dict]:
    return [m for m in slack.messages if m["channel"] == channel]


def test_a_claim_is_won_once(sessions) -> None:  # type: ignore[no-untyped-def]
    assert claims.claim(sessions, "digest", "2026-11-25", owner="a", now=NOW)
    assert not claims.claim(sessions, "digest", "2026-11-25", owner="b", now=NOW)
    claims.finish(sessions, "digest", "2026-11-25", owner="a", now=NOW)
    assert not claims.claim(sessions, "digest", "2026-11-25", owner="b", now=NOW + timedelta(days=1))


def test_a_failed_or_abandoned_claim_can_be_taken_again(sessions) -> None:  # type: ignore[no-untyped-def]
    assert claims.claim(sessions, "check", "p1", owner="a", now=NOW)
    claims.finish(sessions, "check", "p1", owner="a", error="boom", now=NOW)
    assert claims.claim(sessions, "check", "p1", owner="b", now=NOW)
    # b dies while running: after the lease, c may take it; before it, nobody.
    assert not claims.claim(sessions, "check", "p1", owner="c", now=NOW + timedelta(minutes=5))
    assert claims.claim(sessions, "check", "p1", owner="c", now=NOW + timedelta(minutes=16))


def test_concurrent_claims_have_one_winner(sessions) -> None:  # type: ignore[no-untyped-def]
    wins: list[str] = []
    barrier = threading.Barrier(8)

    def contend(name: str) -> None:
        barrier.wait()
        if claims.claim(sessions, "digest", "2026-11-26", owner=name, now=NOW):
            wins.append(name)

    threads = [threading.Thread(target=contend, args=(f"r{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1


def test_enqueue_is_idempotent_and_send_posts_once(sessions, slack, client) -> None:  # type: ignore[no-untyped-def]
    assert queue(sessions)
    assert not queue(sessions)
    report = send_pending(sessions, client, now=NOW)
    assert report.sent == 1
    assert send_pending(sessions, client, now=NOW + timedelta(minutes=5)).sent == 0
    assert len(posted(slack)) == 1
    with sessions() as session:
        row = session.scalar(select(OutboxMessage))
        assert row.status == "sent" and row.ts == posted(slack)[0]["ts"]


def test_rate_limit_then_success_delivers_once(sessions, slack, client) -> None:  # type: ignore[no-untyped-def]
    queue(sessions)
    slack.fail_next("chat.postMessage", status=429, retry_after=7)
    first = send_pending(sessions, client, now=NOW)
    assert first.sent == 0 and "retrying after 7s" in first.errors[0]
    assert send_pending(sessions, client, now=NOW + timedelta(seconds=3)).sent == 0  # still waiting
    assert send_pending(sessions, client, now=NOW + timedelta(seconds=8)).sent == 1
    assert len(posted(slack)) == 1


def test_server_errors_then_success_deliver_once(sessions, slack, client) -> None:  # type: ignore[no-untyped-def]
    queue(sessions)
    slack.fail_next("chat.postMessage", status=500, times=3)
    when = NOW
    for _ in range(3):
        assert send_pending(sessions, client, now=when).sent == 0
        when += timedelta(minutes=11)
    assert send_pending(sessions, client, now=when).sent == 1
    assert len(posted(slack)) == 1


def test_slack_down_keeps_everything_then_posts_once(sessions, slack, client) -> None:  # type: ignore[no-untyped-def]
    for i in range(3):
        queue(sessions, key=f"alert:b:2026-11:threshold:{i}")
    slack.set_down(True, status=None)
    assert send_pending(sessions, client, now=NOW).sent == 0
    slack.set_down(False)
    assert send_pending(sessions, client, now=NOW + timedelta(minutes=11)).sent == 3
    assert len(posted(slack)) == 3
    assert send_pending(sessions, client, now=NOW + timedelta(hours=1)).sent == 0


def test_a_sender_that_died_after_posting_is_not_posted_twice(sessions, slack, client) -> None:  # type: ignore[no-untyped-def]
    queue(sessions, now=datetime.now(timezone.utc))
    # A first sender claimed the row and posted, then died before recording the ts.
    with sessions() as session, session.begin():
        row = session.scalar(select(OutboxMessage))
        client.chat_postMessage(channel=row.channel, text=row.text,
                                metadata={"event_type": "budget_guard_message", "event_payload": {"key": row.dedupe_key}})
        session.execute(update(OutboxMessage).values(status="sending", claimed_by="dead",
                                                     claimed_at=datetime.now(timezone.utc)))
    later = datetime.now(timezone.utc) + SENDING_LEASE + timedelta(seconds=1)
    assert send_pending(sessions, client, now=later).sent == 1
    assert len(posted(slack)) == 1
    with sessions() as session:
        assert session.scalar(select(OutboxMessage.ts)) == posted(slack)[0]["ts"]


def test_a_sender_that_died_before_posting_posts_once(sessions, slack, client) -> None:  # type: ignore[no-untyped-def]
    queue(sessions, now=datetime.now(timezone.utc))
    with sessions() as session, session.begin():
        session.execute(update(OutboxMessage).values(status="sending", claimed_by="dead",
                                                     claimed_at=datetime.now(timezone.utc)))
    assert send_pending(sessions, client, now=datetime.now(timezone.utc)).sent == 0  # lease still running
    later = datetime.now(timezone.utc) + SENDING_LEASE + timedelta(seconds=1)
    assert send_pending(sessions, client, now=later).sent == 1
    assert len(posted(slack)) == 1


def test_replies_go_into_the_first_alerts_thread(sessions, slack, client) -> None:  # type: ignore[no-untyped-def]
    queue(sessions, key="parent")
    queue(sessions, key="child", thread_of="parent")
    send_pending(sessions, client, now=NOW)
    send_pending(sessions, client, now=NOW + timedelta(seconds=10))
    parent, child = posted(slack)
    assert child["thread_ts"] == parent["ts"] and "thread_ts" not in parent


def test_attachment_goes_up_through_slacks_three_upload_steps(sessions, slack, client) -> None:  # type: ignore[no-untyped-def]
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 100
    queue(sessions, key="digest:2026-11-25", attachment=png, attachment_name="spend.png")
    assert send_pending(sessions, client, now=NOW).sent == 1
    methods = [c.method for c in slack.calls]
    assert methods.count("files.getUploadURLExternal") == 1 and methods.count("files.completeUploadExternal") == 1
    assert [f.data for f in slack.files.values()] == [png]


def test_a_post_whose_answer_was_lost_is_not_posted_again(sessions, slack, client) -> None:  # type: ignore[no-untyped-def]
    queue(sessions, now=datetime.now(timezone.utc))
    slack.lose_answer_next("chat.postMessage")  # Slack posts it, the answer never arrives
    first = send_pending(sessions, client, now=datetime.now(timezone.utc))
    assert first.sent == 0 and "unreachable" in first.errors[0]
    assert send_pending(sessions, client, now=datetime.now(timezone.utc) + timedelta(minutes=11)).sent == 1
    assert len(posted(slack)) == 1
    assert len(slack.calls_to("chat.postMessage")) == 1  # found in the history, not posted again
    with sessions() as session:
        assert session.scalar(select(OutboxMessage.ts)) == posted(slack)[0]["ts"]


def test_a_clear_refusal_posts_again_without_looking(sessions, slack, client) -> None:  # type: ignore[no-untyped-def]
    queue(sessions)
    slack.fail_next("chat.postMessage", status=429, retry_after=1)  # Slack said no: nothing was posted
    send_pending(sessions, client, now=NOW)
    assert send_pending(sessions, client, now=NOW + timedelta(minutes=11)).sent == 1
    assert slack.calls_to("conversations.history") == [] and len(posted(slack)) == 1


@pytest.mark.parametrize("header", [("Retry-After", "1.5"), ("retry-after", "30"), ("Retry-After", "soon")])
def test_any_retry_after_header_defers_the_message(sessions, slack, client, header) -> None:  # type: ignore[no-untyped-def]
    from tests.fakes.http_server import Fault, Response

    queue(sessions)
    name, value = header
    slack.add_fault(Fault(response=Response.json({"ok": False, "error": "ratelimited"}, 429, {name: value}),
                          path="/api/chat.postMessage"))
    assert send_pending(sessions, client, now=NOW).sent == 0
    with sessions() as session:
        row = session.scalar(select(OutboxMessage))
        assert row.status == "pending"
        wait = (row.next_attempt_at - NOW).total_seconds()
    assert wait == {"1.5": 1.5, "30": 30, "soon": 1}[value]
    assert send_pending(sessions, client, now=NOW + timedelta(seconds=31)).sent == 1


def test_a_chart_whose_upload_answer_was_lost_goes_up_once(sessions, slack, client) -> None:  # type: ignore[no-untyped-def]
    png = b"\x89PNG\r\n\x1a\n" + b"1" * 100
    queue(sessions, key="digest:2026-11-26", attachment=png, attachment_name="spend-2026-11-26.png",
          attachment_alt="Daily spend per model", now=datetime.now(timezone.utc))
    slack.lose_answer_next("files.completeUploadExternal")  # shared in the channel; the answer is lost
    assert send_pending(sessions, client, now=datetime.now(timezone.utc)).sent == 0
    assert send_pending(sessions, client, now=datetime.now(timezone.utc) + timedelta(minutes=11)).sent == 1
    assert len(posted(slack)) == 1
    assert len(slack.calls_to("files.completeUploadExternal")) == 1
    assert [f.alt_txt for f in slack.files.values()] == ["Daily spend per model"]


def test_two_senders_share_no_message(sessions, slack) -> None:  # type: ignore[no-untyped-def]
    for i in range(20):
        queue(sessions, key=f"k{i}")
    clients = [WebClient(token=BOT_TOKEN, base_url=slack.url, retry_handlers=[]) for _ in range(2)]
    threads = [threading.Thread(target=send_pending, args=(sessions, c), kwargs={"owner": f"s{i}", "now": NOW})
               for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    texts = [m["ts"] for m in posted(slack)]
    assert len(texts) == 20 and len(set(texts)) == 20


def test_a_job_whose_process_died_runs_again_after_job_lease_seconds(database_url: str) -> None:
    from apscheduler.triggers.cron import CronTrigger

    from jobs.config.context import Context
    from jobs.config.settings import Settings
    from jobs.runtime.scheduler import ScheduledJob, period_key, run_claimed

    context = Context.open(Settings(database_url=database_url, job_lease_seconds=60))
    try:
        job = ScheduledJob("digest", CronTrigger.from_crontab("0 9 * * *", timezone=context.settings.zone),
                           lambda ctx, fire: ran.append(fire))
        ran: list[datetime] = []
        fire = datetime(2026, 11, 25, 9, tzinfo=timezone.utc)
        assert claims.claim(context.sessions, "digest", period_key(fire), owner="dead", now=fire)  # then killed
        assert not run_claimed(context, job, now=fire + timedelta(seconds=59))
        assert run_claimed(context, job, now=fire + timedelta(seconds=61))
        assert ran == [fire]
        with context.sessions() as session:
            assert claims.status(session, "digest", period_key(fire)) == "done"
    finally:
        context.close()


class _BrokenClient(WebClient):
    """A client whose post fails with what no Slack error handler catches (a bug, a broken library)."""

    def chat_postMessage(self, **kwargs):  # type: ignore[no-untyped-def, override]
        raise RuntimeError("not a Slack error")


def statuses(sessions) -> list[tuple[str, str | None]]:  # type: ignore[no-untyped-def]
    with sessions() as session:
        return [(r.status, r.claimed_by) for r in session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))]


def test_a_non_slack_error_defers_the_row_instead_of_leaving_it_sending(sessions, slack, client) -> None:  # type: ignore[no-untyped-def]
    for i in range(2):
        queue(sessions, key=f"alert:c:2026-11:threshold:{i}")
    broken = _BrokenClient(token=BOT_TOKEN, base_url=slack.url, retry_handlers=[], timeout=5)
    report = send_pending(sessions, broken, now=NOW)
    assert (report.sent, report.deferred) == (0, 2) and "RuntimeError" in report.errors[0]
    assert statuses(sessions) == [("pending", None), ("pending", None)]
    # Well before the lease would have run out, a working sender posts both, once.
    assert send_pending(sessions, client, now=NOW + timedelta(seconds=30)).sent == 2
    assert len(posted(slack)) == 2


def test_an_error_escaping_the_batch_hands_its_rows_back(sessions, slack, client,  # type: ignore[no-untyped-def]
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import jobs.runtime.outbox as outbox

    for i in range(3):
        queue(sessions, key=f"alert:d:2026-11:threshold:{i}")

    def database_gone(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise ConnectionError("the database went away")

    monkeypatch.setattr(outbox, "_send_one", database_gone)
    with pytest.raises(ConnectionError):
        send_pending(sessions, client, now=NOW)
    assert statuses(sessions) == [("pending", None)] * 3  # not "sending" until the lease runs out
    monkeypatch.undo()
    assert send_pending(sessions, client, now=NOW + timedelta(seconds=1)).sent == 3
    assert len(posted(slack)) == 3
