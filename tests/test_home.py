"""The App Home tab over real HTTP: a signed `app_home_opened` event in, `views.publish` out."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import httpx

from bot.app import create_app
from bot.server import create_server
from jobs.config.context import Context
from jobs.config.sections import BudgetConfig
from tests.fakes.slack_api import FakeSlack
from tests.harness import SIGNING_SECRET, ServerThread, signed_headers, slack_settings
from tests.processes import wait_until
from tests.test_digest import MODEL, bucket, record

READER = "U0READER"


def serve(database_url: str, slack: FakeSlack, **overrides: Any) -> tuple[Context, ServerThread]:
    settings = slack_settings(database_url, slack, alert_channel="C0ALERTS", **overrides)
    context = Context.open(settings)
    return context, ServerThread(create_server(context, create_app(context)))


def open_home(base_url: str, user: str = READER, tab: str = "home", secret: str = SIGNING_SECRET) -> httpx.Response:
    body = json.dumps({
        "token": "legacy-unused", "team_id": "T0FAKETEAM", "api_app_id": "A0FAKEAPP1", "type": "event_callback",
        "event_id": f"Ev{time.time_ns()}", "event_time": int(time.time()),
        "event": {"type": "app_home_opened", "user": user, "channel": "D0HOME", "tab": tab,
                  "event_ts": f"{time.time():.6f}"},
    })
    headers = {**signed_headers(body, secret), "Content-Type": "application/json"}
    return httpx.post(f"{base_url}/slack/events", content=body, headers=headers, timeout=10)


def recent_usage(context: Context, models: list[str], days: int = 20) -> None:
    now = datetime.now(timezone.utc)
    rows = [bucket(now - timedelta(days=n, hours=1), Decimal(10 + i % 50), model=model, project=f"p{i % 10}")
            for n in range(days) for i, model in enumerate(models)]
    record(context, rows)


def test_opening_the_home_tab_publishes_budgets_models_and_savings(database_url: str, slack: FakeSlack) -> None:
    context, server = serve(database_url, slack, budgets=[
        BudgetConfig(name="search", amount=Decimal(5000), scope={"project": "p0"})])
    recent_usage(context, [MODEL, "openai/gpt-oss-120b"])
    with server:
        response = open_home(server.url)
        assert response.status_code == 200  # acknowledged at once; the view follows
        assert wait_until(lambda: READER in slack.home_views, timeout=20)
    context.close()
    [call] = slack.calls_to("views.publish")
    assert call.params["user_id"] == READER
    view = call.params["view"]
    assert view["type"] == "home" and len(view["blocks"]) <= 100
    everything = json.dumps(view["blocks"], ensure_ascii=False)
    assert "LLM spend ·" in everything and "Forecast month-end" in everything
    assert "*search* $" in everything and ("▓" in everything or "░" in everything)
    assert "Month to date by model" in everything and f"*{MODEL}*" in everything
    assert "Batch savings on offer" in everything


def test_the_home_tab_with_200_models_stays_within_100_blocks(database_url: str, slack: FakeSlack) -> None:
    budgets = [BudgetConfig(name=f"budget-{i:02d}", amount=Decimal(1000), scope={"project": f"p{i % 10}"})
               for i in range(60)]
    context, server = serve(database_url, slack, budgets=budgets)
    recent_usage(context, [f"vendor/model-{i:03d}" for i in range(200)], days=10)
    with server:
        assert open_home(server.url).status_code == 200
        assert wait_until(lambda: READER in slack.home_views, timeout=30)
    context.close()
    view = slack.calls_to("views.publish")[0].params["view"]
    assert len(view["blocks"]) <= 100  # and the fake, like Slack, refused nothing
    assert "…and 100 more models" in json.dumps(view["blocks"], ensure_ascii=False)


def test_an_empty_ledger_home_says_how_to_get_usage_in(database_url: str, slack: FakeSlack) -> None:
    context, server = serve(database_url, slack, pull_cron="5 * * * *")
    with server:
        assert open_home(server.url).status_code == 200
        assert wait_until(lambda: READER in slack.home_views, timeout=20)
    context.close()
    everything = json.dumps(slack.home_views[READER]["blocks"])
    assert "No usage recorded yet" in everything and "/v1/usage" in everything and "budget-guard import" in everything
    assert "it is pulled hourly at :05" in everything and "15 minutes" not in everything  # PULL_CRON, as set


def test_the_messages_tab_and_unsigned_events_publish_nothing(database_url: str, slack: FakeSlack) -> None:
    context, server = serve(database_url, slack)
    with server:
        assert open_home(server.url, tab="messages").status_code == 200
        assert open_home(server.url, secret="not-the-signing-secret").status_code == 401
        time.sleep(1.0)
    context.close()
    assert slack.calls_to("views.publish") == []
