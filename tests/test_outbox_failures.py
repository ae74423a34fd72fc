"""The outbox when Slack says no: permanent refusals end in one failed row and one operator notice,
transient ones are retried; rows that may have landed where the bot cannot look are never posted
twice silently; a chart whose completion failed completes the same file. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from slack_sdk import WebClient
from sqlalchemy import select

from bot.cli import main
from bot.metrics import database_gauges
from bot.runtime import command_outbox_policy
from db.models import OperatorNotice, OutboxMessage
from jobs.config.context import Context
from jobs.runtime.outbox import OutboxPolicy, enqueue, send_pending
from jobs.runtime.outbox_operator import retry
from tests.fakes.slack_api import FakeSlack
from tests.harness import BOT_TOKEN, slack_settings

ALERTS, OPS = "C0ALERTS", "C0OPS"
CHANNEL_ERRORS = ["channel_not_found", "not_in_channel", "is_archived"]
MESSAGE_ERRORS = ["msg_too_long", "invalid_blocks", "no_text"]
TOKEN_ERRORS = ["invalid_auth", "account_inactive", "token_revoked"]


@pytest.fixture
def client(slack: FakeSlack) -> WebClient:
    return WebClient(token=BOT_TOKEN, base_url=slack.url, retry_handlers=[], timeout=5)


def open_context(database_url: str, slack: FakeSlack, **overrides: Any) -> Context:
    values: dict[str, Any] = dict(alert_channel=ALERTS, ops_channel=OPS, admins=["U0ADMIN"])
    values.update(overrides)
    return Context.open(slack_settings(database_url, slack, **values))


@pytest.fixture
def context(database_url: str, slack: FakeSlack) -> Iterator[Context]:
    ctx = open_context(database_url, slack)
    yield ctx
    ctx.close()


def queue(context: Context, key: str, *, channel: str = ALERTS, text: str = "Budget a: 80% used",
          now: datetime | None = None, **kwargs: Any) -> int:
    with context.sessions() as session, session.begin():
        enqueue(session, key=key, kind="alert", channel=channel, text=text, now=now, **kwargs)
        return session.scalar(select(OutboxMessage.id).where(OutboxMessage.dedupe_key == key))  # type: ignore[return-value]


def send(context: Context, client: WebClient, at: datetime | None = None):  # type: ignore[no-untyped-def]
    return send_pending(context.sessions, client, now=at or datetime.now(timezone.utc),
                        policy=command_outbox_policy(context))


def rows(context: Context) -> dict[str, OutboxMessage]:
    with context.sessions() as session:
        return {r.dedupe_key: r for r in session.scalars(select(OutboxMessage))}


def in_channel(slack: FakeSlack, channel: str) -> list[dict[str, Any]]:
    return [m for m in slack.messages if m["channel"] == channel]


def later(minutes: float) -> datetime:
    return datetime.now(timezone.utc) + timedelta(minutes=minutes)


BREAK = {  # how each refusal comes about, as it does in Slack
    "channel_not_found": lambda slack: slack.delete_channel(ALERTS),
    "not_in_channel": lambda slack: slack.add_channel(ALERTS, is_member=False, is_private=True),
    "is_archived": lambda slack: slack.add_channel(ALERTS, is_archived=True),
}
BAD_CONTENT = {"msg_too_long": {"text": "x" * 40_001}, "no_text": {"text": ""},
               "invalid_blocks": {"blocks": [{"type": "divider"}] * 51}}


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
@pytest.mark.parametrize("error", CHANNEL_ERRORS + MESSAGE_ERRORS)
def test_a_permanent_refusal_fails_the_row_once_and_tells_the_ops_channel_once(
        context: Context, slack: FakeSlack, client: WebClient, error: str) -> None:
    if error in BREAK:
        BREAK[error](slack)
    first = queue(context, "alert:one", **BAD_CONTENT.get(error, {}))
    report = send(context, client)
    assert (report.sent, report.failed) == (1, 1)  # the alert failed; the notice about it was posted
    row = rows(context)["alert:one"]
    assert (row.status, row.failed_reason) == ("failed", error)
    for minutes in (15, 60):  # not retried: Slack would only say it again
        send(context, client, later(minutes))
    assert len([c for c in slack.calls_to("chat.postMessage") if c.params["channel"] == ALERTS]) == 1
    # A second, well-formed message to the same channel: a channel problem fails it too, untold.
    queue(context, "alert:two")
    send(context, client, later(90))
    [notice] = in_channel(slack, OPS)
    if error in CHANNEL_ERRORS:
        assert rows(context)["alert:two"].status == "failed"
        assert f"I cannot post to <#{ALERTS}>" in notice["text"] and f"budget-guard outbox retry {first}" in notice["text"]
    else:
        assert rows(context)["alert:two"].status == "sent"
        assert f"`{error}`" in notice["text"] and "bug in budget-guard" in notice["text"]
    gauges = "\n".join(database_gauges(context))
    assert f'budget_guard_outbox_failed{{reason="{error}"}} {2 if error in CHANNEL_ERRORS else 1}' in gauges


@pytest.mark.parametrize("error", TOKEN_ERRORS)
def test_a_token_problem_is_told_once_as_a_token_problem(context: Context, slack: FakeSlack, client: WebClient,
                                                        error: str, caplog: pytest.LogCaptureFixture) -> None:
    for n in range(3):
        queue(context, f"alert:{n}")
    slack.invalid_token = error
    with caplog.at_level(logging.ERROR, logger="jobs.runtime.operator_notices"):
        report = send(context, client)
        send(context, client, later(30))
    assert report.failed == 3 and {r.status for r in rows(context).values()} == {"failed"}
    told = [r.getMessage() for r in caplog.records if r.name == "jobs.runtime.operator_notices"]
    assert len(told) == 1, told  # once, in the log: no token can post it to Slack
    assert f"Slack no longer accepts the bot token ({error})" in told[0] and "SLACK_BOT_TOKEN" in told[0]
    assert "for channel" not in told[0] and ALERTS not in told[0]
    # The operator installs a new token and retries everything that waited: each posted once.
    slack.invalid_token = None
    assert main(["outbox", "retry", "--failed", "--database-url", context.settings.database_url]) == 0
    assert send(context, client, later(31)).sent == 3
    assert len(in_channel(slack, ALERTS)) == 3


TRANSIENT = {  # twice each, then Slack takes the message
    "HTTP 500": lambda slack: slack.fail_next("chat.postMessage", status=500, times=2),
    "HTTP 429": lambda slack: slack.fail_next("chat.postMessage", status=429, retry_after=1, times=2),
    "ratelimited": lambda slack: slack.fail_next("chat.postMessage", error="ratelimited", times=2),
    "internal_error": lambda slack: slack.fail_next("chat.postMessage", error="internal_error", times=2),
    "a dropped connection": lambda slack: slack.drop_next("chat.postMessage", times=2),
}


def test_a_transient_error_is_retried_and_posts_once(context: Context, slack: FakeSlack, client: WebClient) -> None:
    for n, (fault, cause) in enumerate(TRANSIENT.items()):
        key = f"alert:{fault}"
        queue(context, key, text=f"after {fault}", now=datetime.now(timezone.utc))
        cause(slack)
        assert send(context, client, later(100 * n)).deferred == 1, fault
        assert send(context, client, later(100 * n + 11)).deferred == 1, fault
        assert rows(context)[key].status == "pending", fault
        assert send(context, client, later(100 * n + 22)).sent == 1, fault
    assert sorted(m["text"] for m in in_channel(slack, ALERTS)) == sorted(f"after {f}" for f in TRANSIENT)
    assert in_channel(slack, OPS) == []  # nobody is bothered with what fixes itself


def test_without_an_ops_channel_the_admins_home_tabs_show_the_notice(database_url: str, slack: FakeSlack,
                                                                    client: WebClient) -> None:
    context = open_context(database_url, slack, ops_channel=None)
    slack.add_channel(ALERTS, is_archived=True)
    queue(context, "alert:archived")
    send(context, client)
    send(context, client, later(10))
    [published] = slack.calls_to("views.publish")
    assert published.params["user_id"] == "U0ADMIN"
    blocks = json.dumps(published.params["view"]["blocks"])
    assert "Needs an operator" in blocks and f"I cannot post to <#{ALERTS}>: the channel is archived" in blocks
    context.close()


def test_a_broken_ops_channel_falls_back_to_the_admins(context: Context, slack: FakeSlack, client: WebClient) -> None:
    slack.add_channel(ALERTS, is_archived=True)
    slack.add_channel(OPS, is_archived=True)
    queue(context, "alert:x")
    send(context, client)
    send(context, client, later(5))
    assert {r.kind: r.status for r in rows(context).values()} == {"alert": "failed", "notice": "failed"}
    [published] = slack.calls_to("views.publish")
    blocks = json.dumps(published.params["view"]["blocks"])
    assert f"I cannot post to <#{OPS}>" in blocks and f"I cannot post to <#{ALERTS}>" in blocks


def test_retry_after_the_fix_posts_once_and_a_new_breakage_is_told_again(context: Context, slack: FakeSlack,
                                                                         client: WebClient, capsys) -> None:  # type: ignore[no-untyped-def]
    slack.add_channel(ALERTS, is_member=False, is_private=True)
    row_id = queue(context, "alert:kicked")
    send(context, client)
    url = context.settings.database_url
    assert main(["outbox", "--database-url", url]) == 0
    table = capsys.readouterr().out
    assert "failed" in table and "the bot was removed from it" in table and "Open notice" in table
    assert main(["outbox", "--json", "--database-url", url]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(m["id"], m["state"], m["reason"]) for m in listed["messages"]] == [(row_id, "failed", "not_in_channel")]
    assert main(["outbox", "retry", "999", "--database-url", url]) == 2
    assert "there is no outbox row 999" in capsys.readouterr().err

    slack.add_channel(ALERTS, is_member=True, is_private=True)  # invited back
    assert main(["outbox", "retry", str(row_id), "--database-url", url]) == 0
    assert send(context, client, later(1)).sent == 1
    assert main(["outbox", "retry", str(row_id), "--database-url", url]) == 2  # sent: nothing to retry
    assert "already sent" in capsys.readouterr().err
    # Removed again: a new failure is a new problem, told again.
    slack.add_channel(ALERTS, is_member=False, is_private=True)
    queue(context, "alert:kicked-again")
    send(context, client, later(2))
    assert len(in_channel(slack, OPS)) == 2 and len(in_channel(slack, ALERTS)) == 1
    with context.sessions() as session:
        assert len([n for n in session.scalars(select(OperatorNotice)) if n.open_key]) == 1


def test_a_reply_to_a_failed_parent_is_posted_on_its_own(context: Context, slack: FakeSlack,
                                                         client: WebClient) -> None:
    queue(context, "parent", text="x" * 40_001)  # msg_too_long
    queue(context, "child", thread_of="parent")
    send(context, client)
    send(context, client, later(1))
    assert rows(context)["child"].status == "sent"
    [child] = in_channel(slack, ALERTS)
    assert "thread_ts" not in child


# -- an uncertain row (the post's answer was lost) in a channel the bot has not joined ----------


def test_the_bot_joins_a_public_channel_before_posting_so_a_lost_answer_is_found(
        context: Context, slack: FakeSlack, client: WebClient) -> None:
    slack.add_channel(ALERTS, is_member=False)  # public, not joined; chat:write.public would let it post
    queue(context, "alert:lost", now=datetime.now(timezone.utc))
    slack.lose_answer_next("chat.postMessage")
    assert send(context, client).deferred == 1
    assert [c.method for c in slack.calls][:2] == ["conversations.join", "chat.postMessage"]
    assert send(context, client, later(11)).sent == 1
    assert len(in_channel(slack, ALERTS)) == 1 and len(slack.calls_to("chat.postMessage")) == 1


def skipped_setup(context: Context, slack: FakeSlack, client: WebClient) -> int:
    """A row whose post landed but whose answer was lost, in a public channel the bot cannot join
    (an install without channels:join), so its history cannot be read."""
    slack.add_channel(ALERTS, is_member=False)
    slack.refuse("conversations.join", "missing_scope")
    row_id = queue(context, "alert:unchecked", now=datetime.now(timezone.utc))
    slack.lose_answer_next("chat.postMessage")
    send(context, client)
    return row_id


def test_skip_never_posts_a_second_copy_and_says_what_may_be_missing(context: Context, slack: FakeSlack,
                                                                     client: WebClient) -> None:
    row_id = skipped_setup(context, slack, client)
    report = send(context, client, later(11))
    assert report.skipped == 1 and len(in_channel(slack, ALERTS)) == 1  # the one that landed; no second copy
    row = rows(context)["alert:unchecked"]
    assert (row.status, row.failed_reason) == ("skipped", "unchecked")
    [notice] = in_channel(slack, OPS)
    assert f"I may have missed posting the alert “Budget a: 80% used” to <#{ALERTS}>" in notice["text"]
    assert f"budget-guard outbox retry {row_id}" in notice["text"] and "OUTBOX_UNCERTAIN=repost" in notice["text"]
    send(context, client, later(30))
    assert len(in_channel(slack, ALERTS)) == 1 and len(in_channel(slack, OPS)) == 1
    assert 'budget_guard_outbox_failed{reason="unchecked"} 1' in "\n".join(database_gauges(context))


def test_repost_marks_the_possible_second_copy(database_url: str, slack: FakeSlack, client: WebClient) -> None:
    context = open_context(database_url, slack, outbox_uncertain="repost")
    skipped_setup(context, slack, client)
    assert send(context, client, later(11)).sent == 1
    first, second = in_channel(slack, ALERTS)
    assert "second copy" not in first["text"] and "this may be a second copy" in second["text"]
    context.close()


def test_a_private_channel_the_bot_was_removed_from_is_not_posted_twice(context: Context, slack: FakeSlack,
                                                                        client: WebClient) -> None:
    slack.add_channel(ALERTS, is_private=True)
    queue(context, "alert:private", now=datetime.now(timezone.utc))
    slack.lose_answer_next("chat.postMessage")
    send(context, client)
    slack.add_channel(ALERTS, is_private=True, is_member=False)  # removed before the sender looks
    send(context, client, later(11))
    assert rows(context)["alert:private"].status == "skipped"
    assert len(slack.calls_to("chat.postMessage")) == 2  # the lost one, and the notice; no second alert
    assert "I may have missed posting" in in_channel(slack, OPS)[0]["text"]


# -- charts --------------------------------------------------------------------------------------


PNG = b"\x89PNG\r\n\x1a\n" + b"2" * 200


@pytest.mark.parametrize("fault", ["status_500", "internal_error", "dropped"])
def test_a_failed_completion_completes_the_same_file(context: Context, slack: FakeSlack, client: WebClient,
                                                     fault: str) -> None:
    queue(context, "digest:chart", text="Spend digest", attachment=PNG, attachment_name="spend-x.png",
          attachment_alt="Daily spend", now=datetime.now(timezone.utc))
    {"status_500": lambda: slack.fail_next("files.completeUploadExternal", status=500),
     "internal_error": lambda: slack.fail_next("files.completeUploadExternal", error="internal_error"),
     "dropped": lambda: slack.drop_next("files.completeUploadExternal")}[fault]()
    assert send(context, client).deferred == 1
    assert send(context, client, later(11)).sent == 1
    assert len(slack.calls_to("files.getUploadURLExternal")) == 1  # uploaded once
    completions = slack.calls_to("files.completeUploadExternal")
    assert len(completions) == 2 and completions[0].params["files"] == completions[1].params["files"]
    [uploaded] = slack.files.values()
    assert uploaded.data == PNG and uploaded.completed and uploaded.channels == [ALERTS]
    assert len(in_channel(slack, ALERTS)) == 1


def test_a_permanent_completion_refusal_fails_the_row_with_its_message_kept(context: Context, slack: FakeSlack,
                                                                            client: WebClient) -> None:
    queue(context, "digest:scope", text="Spend digest", attachment=PNG, attachment_name="spend-y.png",
          now=datetime.now(timezone.utc))
    slack.refuse("files.completeUploadExternal", "missing_scope")
    send(context, client)
    row = rows(context)["digest:scope"]
    assert (row.status, row.failed_reason) == ("failed", "missing_scope") and row.ts is not None
    [notice] = in_channel(slack, OPS)
    assert "The Slack app lacks" in notice["text"] and "manifest.yaml" in notice["text"]
    slack.clear_faults()
    with context.sessions() as session, session.begin():
        retry(session, [row.id])
    assert send(context, client, later(1)).sent == 1
    assert len(in_channel(slack, ALERTS)) == 1 and len(slack.calls_to("files.getUploadURLExternal")) == 1


def test_a_policy_can_be_given_without_settings(sessions, slack: FakeSlack, client: WebClient,  # type: ignore[no-untyped-def]
                                                caplog: pytest.LogCaptureFixture) -> None:
    with sessions() as session, session.begin():
        enqueue(session, key="bare", kind="alert", channel="C0GONE", text="hello")
    slack.refuse("chat.postMessage", "channel_not_found")
    with caplog.at_level(logging.ERROR):
        assert send_pending(sessions, client, policy=OutboxPolicy()).failed == 1
    assert any("operator notice: I cannot post to channel C0GONE" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("choice", ["skip", "repost"])
def test_a_chart_shared_where_the_bot_cannot_look_is_never_shared_twice_silently(database_url: str, slack: FakeSlack,
                                                                                client: WebClient, choice: str) -> None:
    context = open_context(database_url, slack, outbox_uncertain=choice)
    slack.add_channel(ALERTS, is_member=False)
    slack.refuse("conversations.join", "missing_scope")
    queue(context, "digest:lost-chart", text="Spend digest", attachment=PNG, attachment_name="spend-z.png",
          now=datetime.now(timezone.utc))
    slack.lose_answer_next("files.completeUploadExternal")  # shared; the answer never came
    send(context, client)
    send(context, client, later(11))
    completions = slack.calls_to("files.completeUploadExternal")
    assert len(slack.calls_to("files.getUploadURLExternal")) == 1 and len(in_channel(slack, ALERTS)) == 1
    if choice == "skip":
        assert len(completions) == 1 and rows(context)["digest:lost-chart"].status == "skipped"
        assert "I may have missed posting the chart of the alert “Spend digest”" in in_channel(slack, OPS)[0]["text"]
    else:
        assert len(completions) == 2 and completions[1].params["files"] == completions[0].params["files"]
        assert "this may be a second copy" in completions[1].params["initial_comment"]
        assert rows(context)["digest:lost-chart"].status == "sent"
    context.close()
