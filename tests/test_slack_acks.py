"""Slack as Slack behaves: signed requests in Slack's own shapes, against a fake Web API that takes
4 s to answer. Every button, `/budget` and event gets its 200 at once and the work still happens,
once; a retried event or a replayed click changes nothing twice. The fake grants exactly the
manifest's scopes, so a call the manifest does not cover fails here."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import func, select

from bot.app import admin_directory, create_app
from bot.server import create_server
from db.models import Alert, Budget, SlackDelivery
from jobs.config.context import Context
from jobs.config.settings import Settings
from tests.fakes.slack_api import FakeSlack
from tests.harness import (
    ServerThread,
    block_actions_payload,
    event_callback_body,
    interaction_body,
    post_event,
    post_interaction,
    signed_headers,
    slash_command_body,
)
from tests.processes import wait_until
from tests.test_budgets import make_settings, run_check, spend
from tests.test_manifest_scopes import manifest_scopes

SLOW = 4.0  # seconds Slack takes to answer each Web API call and response_url post
FAST = 2.0  # under Slack's 3 s; any wait on the 4 s Web API exceeds it, a loaded CI machine does not


@pytest.fixture
def slack_scopes() -> set[str]:
    return manifest_scopes()


@pytest.fixture
def slack(slack: FakeSlack) -> FakeSlack:
    slack.set_usergroup("S0ADMINS", ["U0GROUPIE"])
    slack.add_channel("C0ALERTS", members=["U0LEAD"])  # who may acknowledge and snooze its alerts
    return slack


@pytest.fixture
def app_settings(database_url: str, slack: FakeSlack) -> Settings:
    return make_settings(database_url, slack)


def timed(send) -> tuple[httpx.Response, float]:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    response = send()
    return response, time.perf_counter() - started


def command(server: ServerThread, slack: FakeSlack, text: str, user: str, key: str) -> tuple[httpx.Response, float]:
    body = slash_command_body(text, "/budget", user_id=user, response_url=slack.response_url(key))
    return timed(lambda: httpx.post(f"{server.url}/slack/events", content=body, headers=signed_headers(body),
                                    timeout=10))


def home_opened(user: str) -> str:
    return event_callback_body({"type": "app_home_opened", "user": user, "channel": "D0HOME", "tab": "home",
                                "event_ts": f"{time.time():.6f}"})


def posts_to(slack: FakeSlack, key: str) -> list:  # type: ignore[type-arg]
    return [p for p in slack.response_posts if p.key == key]


def test_every_click_command_and_event_is_answered_at_once_while_slack_takes_4_s(context: Context,
                                                                                 slack: FakeSlack) -> None:
    now = datetime.now(timezone.utc)
    spend(context, now - timedelta(hours=2), Decimal(600), feature="search-api")
    run_check(context, now)
    [alert] = slack.messages
    admins = admin_directory(context)
    admins.refresh()
    with ServerThread(create_server(context, create_app(context, admins=admins))) as server:
        slack.set_latency(SLOW)  # from now on every Web API call and response_url post takes 4 s
        button = {e["action_id"]: e["value"] for e in alert["blocks"][-1]["elements"]}
        answers = {
            action: timed(lambda a=action: post_interaction(server.url, block_actions_payload(
                alert, a, button[a], response_url=slack.response_url(a))))
            for action in ("alert_ack", "alert_snooze", "alert_breakdown")
        }
        answers["/budget list"] = command(server, slack, "list", "U0ANYONE", "list")
        answers["/budget set (admin)"] = command(server, slack, "set team-a 500 project=x", "U0ADMIN", "set-admin")
        answers["/budget set (group)"] = command(server, slack, "set team-b 700 project=y", "U0GROUPIE", "set-group")
        answers["app_home_opened"] = timed(lambda: post_event(server.url, home_opened("U0READER")))
        answers["member_joined_channel"] = timed(lambda: post_event(server.url, event_callback_body(
            {"type": "member_joined_channel", "user": "U0NEW", "channel": "C0ALERTS", "event_ts": "1.0"})))

        slow = {name: round(seconds, 3) for name, (response, seconds) in answers.items()
                if response.status_code != 200 or seconds >= FAST}
        assert slow == {}, slow
        assert "team-a" in json.dumps(answers["/budget set (admin)"][0].json())  # answered in the ack

        # The work follows, once each.
        assert wait_until(lambda: len(slack.calls_to("chat.update")) == 2 and len(posts_to(slack, "alert_breakdown"))
                          == 1 and "U0READER" in slack.home_views, timeout=3 * SLOW)
    with context.sessions() as session:
        alert_row = session.scalar(select(Alert))
        assert alert_row.acknowledged_by == "U0LEAD" and alert_row.snoozed_until > now + timedelta(hours=23)
        assert {b.name for b in session.scalars(select(Budget))} >= {"team-a", "team-b"}
    assert len(slack.calls_to("views.publish")) == 1
    assert "$600.00" in json.dumps(posts_to(slack, "alert_breakdown")[0].payload["blocks"])
    assert posts_to(slack, "set-admin") == [] and posts_to(slack, "list") == []  # answered in the ack, not twice


def test_before_the_groups_are_read_a_group_admin_is_told_to_wait_then_answered(context: Context,
                                                                               slack: FakeSlack) -> None:
    slack.set_latency(SLOW, "usergroups.users.list")
    with ServerThread(create_server(context, create_app(context))) as server:  # starts reading the group
        assert wait_until(lambda: slack.calls_to("usergroups.users.list"), timeout=5)  # ...which takes 4 s
        member, member_seconds = command(server, slack, "set team-c 900 project=z", "U0GROUPIE", "member")
        outsider, outsider_seconds = command(server, slack, "delete llama-prod", "U0ANYONE", "outsider")
        assert member_seconds < FAST and outsider_seconds < FAST
        assert "I'll reply in a moment" in member.json()["text"] and "I'll reply" in outsider.json()["text"]
        assert wait_until(lambda: posts_to(slack, "member") and posts_to(slack, "outsider"), timeout=3 * SLOW)
    [saved], [refused] = posts_to(slack, "member"), posts_to(slack, "outsider")
    assert saved.payload["response_type"] == "ephemeral" and "created" in json.dumps(saved.payload["blocks"])
    assert "only budget admins" in refused.payload["text"]
    with context.sessions() as session:
        budgets = {b.name: b for b in session.scalars(select(Budget))}
    assert budgets["team-c"].updated_by == "U0GROUPIE" and not any(b.deleted for b in budgets.values())
    assert len(slack.calls_to("usergroups.users.list")) == 1  # the waiting commands shared the one read


def test_a_retried_event_and_a_replayed_click_change_nothing_twice(context: Context, slack: FakeSlack) -> None:
    now = datetime.now(timezone.utc)
    spend(context, now - timedelta(hours=2), Decimal(600))
    run_check(context, now)
    [alert] = slack.messages
    with ServerThread(create_server(context, create_app(context))) as server:
        slack.set_latency(1.0)  # the first delivery is still at work when Slack retries it
        event = home_opened("U0READER")
        assert post_event(server.url, event).status_code == 200
        for attempt in (1, 2, 3):  # Slack's three retries, same event_id
            assert post_event(server.url, event, retry_num=attempt).status_code == 200
        value = next(e["value"] for e in alert["blocks"][-1]["elements"] if e["action_id"] == "alert_ack")
        click = interaction_body(block_actions_payload(alert, "alert_ack", value, response_url=slack.response_url()))
        for _ in range(2):  # the same delivery twice (a replay within the signature window)
            response = httpx.post(f"{server.url}/slack/events", content=click, headers=signed_headers(click), timeout=10)
            assert response.status_code == 200
        assert post_event(server.url, home_opened("U0OTHER")).status_code == 200  # a new event still goes through
        assert wait_until(lambda: {"U0READER", "U0OTHER"} <= set(slack.home_views)
                          and slack.calls_to("chat.update"), timeout=10)
    assert [c.params["user_id"] for c in slack.calls_to("views.publish")].count("U0READER") == 1
    assert len(slack.calls_to("chat.update")) == 1
    with context.sessions() as session:
        assert session.scalar(select(func.count()).select_from(SlackDelivery)) == 3  # two events, one click
