"""Guard actions: idle endpoints and their Stop button, budgets that stop endpoints, budget status.

together.ai is the fake server (`tests/fakes/together_api.py`) with `PATCH /v1/endpoints/{id}`;
Slack is the fake Web API, and the Bolt app is driven with signed `block_actions` requests."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select

from bot.app import create_app
from bot.server import create_server
from bot.views.alerts import alert_message
from db.models import Alert, BudgetSnapshot, DedicatedEndpoint, JobClaim, UsageBucket
from jobs.budgets.check import check_budgets
from jobs.config.context import Context
from jobs.config.sections import BudgetConfig, Source
from jobs.config.settings import Settings
from jobs.runtime.outbox import send_pending
from jobs.runtime.scheduler import outbox_client
from jobs.usage.endpoints import idle_endpoints
from jobs.usage.pull import pull_sources
from jobs.usage.sources import RetryPolicy
from tests.buckets import add_buckets, usage_bucket
from tests.fakes.slack_api import FakeSlack
from tests.fakes.together_api import SAMPLE_ENDPOINTS, Endpoint, FakeTogether
from tests.harness import ServerThread, post_interaction, slack_settings, trigger_id
from tests.processes import wait_until

KEY = "together-test-key"
IDLE = "endpoint-d23901de-ef8f-44bf-b3e7-de9c1ca8f2d7"
OTHER = "endpoint-0b9a4c2e-8f61-4d0e-9a57-3c1e2f4b6d80"
NAME = "devuser/deepseek-ai/DeepSeek-V3-prod"
NOW = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)  # the source starts counting at 00:00: 12 h up
NO_RETRY = RetryPolicy(attempts=1, base_delay=0, max_delay=0, max_total_wait=0, sleep=lambda seconds: None)
LLAMA = "meta-llama/Llama-3.3-70B-Instruct-Turbo"
PER_MINUTE = Decimal("0.6667")  # 8x H200 in the fake's hardware list: 66.67 cents a minute


def endpoint(endpoint_id: str = IDLE, name: str = NAME, model: str = "deepseek-ai/DeepSeek-V3") -> Endpoint:
    return Endpoint(endpoint_id, model=model, hardware="8x_nvidia_h200_140gb_sxm", name=name,
                    created_at="2026-11-01T00:00:00Z")


@pytest.fixture
def together(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTogether]:
    monkeypatch.setenv("TOGETHER_ENDPOINTS_KEY", KEY)
    with FakeTogether(api_key=KEY, endpoints=[endpoint(), SAMPLE_ENDPOINTS[1]]) as fake:
        yield fake


def make_settings(database_url: str, slack: FakeSlack, together: FakeTogether, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        alert_channel="C0ALERTS", admins=["U0ADMIN"], ingest_tokens="search=tok-search",
        sources=[Source(name="together-endpoints", kind="together_endpoints", base_url=together.url,
                        api_key_env="TOGETHER_ENDPOINTS_KEY", start=date(2026, 11, 20), timeout_seconds=1)],
    )
    values.update(overrides)
    return slack_settings(database_url, slack, **values)


def patches(together: FakeTogether) -> list[Any]:
    return [r for r in together.requests if r.method == "PATCH"]


def observe(context: Context, now: datetime = NOW) -> None:
    [outcome] = pull_sources(context, now=now, retry=NO_RETRY)
    assert outcome.error is None


def check(context: Context, now: datetime = NOW) -> list[Any]:
    posted = check_budgets(context, now=now, render=alert_message)
    send_pending(context.sessions, outbox_client(context), now=now)
    return posted


def add_usage(context: Context, **fields: Any) -> None:
    values: dict[str, Any] = dict(bucket_start=NOW - timedelta(hours=2), source="push", model="m",
                                  input_tokens=1000, output_tokens=100, requests=1)
    values.update(fields)
    add_buckets(context.sessions, [usage_bucket(**values)])


def test_an_endpoint_up_without_tokens_alerts_once_with_what_it_cost(database_url: str, slack: FakeSlack,
                                                                     together: FakeTogether) -> None:
    context = Context.open(make_settings(database_url, slack, together))
    observe(context)
    [draft] = check(context)
    assert draft.kind == "idle" and draft.endpoint == IDLE
    cost = PER_MINUTE * 12 * 60
    assert draft.headline == f"Endpoint {NAME} has been idle for 12 h, costing ${cost:,.2f}"
    assert check(context, NOW + timedelta(minutes=30)) == []  # once per idle stretch
    [message] = slack.messages
    buttons = {e["action_id"]: e for e in message["blocks"][-1]["elements"]}
    assert set(buttons) == {"endpoint_stop", "alert_ack", "alert_snooze"}
    stop = buttons["endpoint_stop"]
    assert stop["style"] == "danger" and stop["confirm"]["confirm"]["text"] == "Stop it"
    assert json.loads(stop["value"])["endpoint"] == IDLE
    context.close()


def test_tokens_recorded_against_an_endpoint_keep_it_from_idling(database_url: str, slack: FakeSlack,
                                                                 together: FakeTogether) -> None:
    context = Context.open(make_settings(database_url, slack, together, idle_endpoint_hours=6))
    observe(context)
    with context.sessions() as session:
        assert [i.endpoint.id for i in idle_endpoints(session, context.settings, NOW)] == [IDLE]
    for traffic in (dict(model="deepseek-ai/DeepSeek-V3", mode="dedicated"),  # its model, on dedicated
                    dict(model=NAME),  # the endpoint's own name as the model, as its requests send
                    dict(tags="endpoint=devuser/deepseek-ai/DeepSeek-V3-prod,team=x")):
        add_usage(context, **traffic)
        with context.sessions() as session:
            assert idle_endpoints(session, context.settings, NOW) == [], traffic
            # ...until six hours after that traffic's bucket ended
            later = idle_endpoints(session, context.settings, NOW + timedelta(hours=5))
            assert [(i.endpoint.id, i.idle_since) for i in later] == [(IDLE, NOW - timedelta(hours=1))]
        with context.sessions() as session, session.begin():
            session.execute(delete(UsageBucket).where(UsageBucket.source == "push"))
    add_usage(context, model="deepseek-ai/DeepSeek-V3", mode="serverless")  # serverless use is not its traffic
    add_usage(context, tags="endpoint=devuser/deepseek-ai/DeepSeek-V3-prod-2")  # nor another endpoint's
    with context.sessions() as session:
        assert [i.endpoint.id for i in idle_endpoints(session, context.settings, NOW)] == [IDLE]
    context.close()


@pytest.fixture
def served(database_url: str, slack: FakeSlack, together: FakeTogether) -> Iterator[tuple[Context, ServerThread]]:
    context = Context.open(make_settings(database_url, slack, together))
    observe(context)
    check(context)
    with ServerThread(create_server(context, create_app(context))) as server:
        yield context, server
    context.close()


def click(server: ServerThread, slack: FakeSlack, user: str, key: str, value: str | None = None) -> httpx.Response:
    """A confirmed click on the alert's Stop endpoint button, as Slack sends it (`block_actions`)."""
    [message] = [m for m in slack.messages if m["channel"] == "C0ALERTS" and "thread_ts" not in m]
    button = next(e for e in message["blocks"][-1]["elements"] if e["action_id"] == "endpoint_stop") \
        if message["blocks"][-1]["type"] == "actions" else {"value": value}
    payload = {
        "type": "block_actions", "user": {"id": user, "username": user.lower(), "team_id": "T0TEST"},
        "api_app_id": "A0TEST", "token": "legacy", "team": {"id": "T0TEST", "domain": "test"},
        "channel": {"id": message["channel"], "name": "alerts"}, "trigger_id": trigger_id(),
        "container": {"type": "message", "message_ts": message["ts"], "channel_id": message["channel"],
                      "is_ephemeral": False},
        "message": {k: v for k, v in message.items() if k != "channel"},
        "response_url": slack.response_url(key),
        "actions": [{"action_id": "endpoint_stop", "block_id": "alert_actions", "type": "button",
                     "text": {"type": "plain_text", "text": "Stop endpoint"}, "style": "danger",
                     "value": value if value is not None else button["value"], "action_ts": "1700000000.000200"}],
    }
    return post_interaction(server.url, payload)


def told(slack: FakeSlack, key: str) -> str:
    assert wait_until(lambda: any(p.key == key for p in slack.response_posts), timeout=20), key
    [post] = [p for p in slack.response_posts if p.key == key]
    assert post.payload["response_type"] == "ephemeral"
    return post.payload["text"]


def endpoint_row(context: Context, endpoint_id: str = IDLE) -> DedicatedEndpoint:
    with context.sessions() as session:
        row = session.get(DedicatedEndpoint, endpoint_id)
        assert row is not None
        return row


def test_the_stop_button_stops_the_endpoint_once_and_edits_the_alert(served: tuple[Context, ServerThread],
                                                                     slack: FakeSlack, together: FakeTogether) -> None:
    context, server = served
    [alert_value] = [json.loads(e["value"]) for e in slack.messages[0]["blocks"][-1]["elements"]
                     if e["action_id"] == "endpoint_stop"]

    # A non-admin's click, and forged buttons (no such alert; another endpoint): nothing changes.
    assert click(server, slack, "U0LEAD", "lead").status_code == 200
    assert "Only budget admins can stop endpoints; nothing was changed" in told(slack, "lead")
    forged = [json.dumps({"alert_id": 99999, "endpoint": IDLE}),
              json.dumps({"alert_id": alert_value["alert_id"], "endpoint": OTHER}),
              json.dumps({"alert_id": -1, "endpoint": IDLE}), "not json"]
    for n, value in enumerate(forged):
        assert click(server, slack, "U0ADMIN", f"forged{n}", value).status_code == 200
        assert "nothing was changed" in told(slack, f"forged{n}"), value
    assert patches(together) == [] and slack.calls_to("chat.update") == []
    assert endpoint_row(context).state == "STARTED"

    # An admin's click: one PATCH, field for field as the spec has it, then the alert says who and when.
    response = click(server, slack, "U0ADMIN", "admin")
    assert response.status_code == 200 and response.content == b""  # acknowledged before any work
    assert wait_until(lambda: slack.calls_to("chat.update"), timeout=20)
    [patch] = patches(together)
    assert patch.path == f"/v1/endpoints/{IDLE}" and patch.json() == {"state": "STOPPED"}
    assert patch.bearer_token == KEY and patch.header("Content-Type") == "application/json"
    [updated] = [m for m in slack.messages if m["ts"] == slack.messages[0]["ts"]]
    blocks = json.dumps(updated["blocks"])
    assert "Stopped by <@U0ADMIN>" in blocks and "together.ai says STOPPED" in blocks
    assert all(b["type"] != "actions" for b in updated["blocks"])
    row = endpoint_row(context)
    assert (row.state, row.stopped_by, row.up_since) == ("STOPPED", "U0ADMIN", None)

    # The same click replayed: nothing more is sent.
    assert click(server, slack, "U0ADMIN", "replay", json.dumps(alert_value)).status_code == 200
    assert "was already stopped by <@U0ADMIN>" in told(slack, "replay")
    assert len(patches(together)) == 1 and len(slack.calls_to("chat.update")) == 1
    observe(context, NOW + timedelta(minutes=15))  # the next pull sees it stopped: no new idle alert
    assert endpoint_row(context).state == "NOT_BILLED"
    assert check(context, NOW + timedelta(minutes=15)) == []


def test_a_refused_or_unanswered_stop_says_why_in_the_thread_and_changes_nothing(
        served: tuple[Context, ServerThread], slack: FakeSlack, together: FakeTogether) -> None:
    context, server = served
    alert_ts = slack.messages[0]["ts"]

    def thread_replies() -> list[dict[str, Any]]:
        return [m for m in slack.messages if m.get("thread_ts") == alert_ts]

    together.fail_next(f"/v1/endpoints/{IDLE}", status=403)
    assert click(server, slack, "U0ADMIN", "refused").status_code == 200
    assert wait_until(lambda: len(thread_replies()) == 1, timeout=20)
    assert "together.ai refused: HTTP 403" in thread_replies()[0]["text"]
    assert "Nothing was retried" in thread_replies()[0]["text"]

    together.hang_next(3, f"/v1/endpoints/{IDLE}")  # the source's timeout is 1 s
    assert click(server, slack, "U0ADMIN", "timeout").status_code == 200
    assert len(thread_replies()) == 1  # acknowledged while together.ai still holds the PATCH
    assert wait_until(lambda: len(thread_replies()) == 2, timeout=20)
    assert "did not answer within 1 s; the endpoint may or may not be stopping" in thread_replies()[1]["text"]

    assert len(patches(together)) == 2  # one call per click, no retries
    assert endpoint_row(context).state == "STARTED" and endpoint_row(context).stopped_by is None
    assert slack.calls_to("chat.update") == []
    with context.sessions() as session:
        [claim] = session.scalars(select(JobClaim).where(JobClaim.job == "stop-endpoint"))
        assert claim.status == "failed" and "did not answer" in (claim.error or "")


def test_a_budget_that_stops_endpoints_stops_them_once_across_two_replicas(database_url: str, slack: FakeSlack,
                                                                            together: FakeTogether) -> None:
    together.endpoints = [endpoint(), endpoint(OTHER, name="devuser/llama-batch", model="meta-llama/Llama-3.3-70B"),
                          SAMPLE_ENDPOINTS[1]]
    settings = make_settings(database_url, slack, together, idle_endpoint_hours=24, budgets=[
        BudgetConfig(name="gpus", amount=Decimal(500), scope={"mode": "dedicated"}, thresholds=[80],
                     forecast=False, on_exceed="stop-endpoints"),
        BudgetConfig(name="chat", amount=Decimal(100), scope={"project": "search"}, forecast=False,
                     on_exceed="stop-endpoints")])  # not spent: stops nothing
    replicas = [Context.open(settings), Context.open(settings)]
    observe(replicas[0])  # two endpoints, 12 h each at $40/h: $960 of $500

    def check_on_both(now: datetime) -> None:
        barrier = threading.Barrier(2)

        def run(ctx: Context) -> None:
            barrier.wait()
            check(ctx, now)

        threads = [threading.Thread(target=run, args=(ctx,)) for ctx in replicas]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    check_on_both(NOW)
    assert sorted(p.path for p in patches(together)) == sorted([f"/v1/endpoints/{IDLE}", f"/v1/endpoints/{OTHER}"])
    check_on_both(NOW + timedelta(minutes=30))
    assert len(patches(together)) == 2
    [alert] = [m for m in slack.messages if "Budget gpus" in m["text"]]
    assert "stopping devuser/deepseek-ai/DeepSeek-V3-prod, devuser/llama-batch now" in alert["text"]
    replies = [m for m in slack.messages if m.get("thread_ts") == alert["ts"]]
    assert sorted(m["text"].split(":")[0] for m in replies) == [
        "Stopped endpoint devuser/deepseek-ai/DeepSeek-V3-prod (deepseek-ai/DeepSeek-V3)",
        "Stopped endpoint devuser/llama-batch (meta-llama/Llama-3.3-70B)"]
    with replicas[0].sessions() as session:
        assert {r.id: r.stopped_by for r in session.scalars(select(DedicatedEndpoint))} == {
            IDLE: "budget:gpus", OTHER: "budget:gpus"}
        assert sorted((a.kind, a.threshold) for a in session.scalars(select(Alert).where(Alert.budget == "gpus"))) == \
            sorted([("stop", IDLE), ("stop", OTHER), ("threshold", "100"), ("threshold", "80")])
    for ctx in replicas:
        ctx.close()


def test_budget_status_answers_allow_or_deny_from_the_last_check(database_url: str, slack: FakeSlack,
                                                                 together: FakeTogether) -> None:
    settings = make_settings(database_url, slack, together, sources=[], budgets=[
        BudgetConfig(name="search", amount=Decimal(100), scope={"project": "search"}),
        BudgetConfig(name="llama-search", amount=Decimal(50), scope={"project": "search", "model": LLAMA}),
        BudgetConfig(name="other", amount=Decimal(10), scope={"project": "other"})])
    context = Context.open(settings)
    now = datetime.now(timezone.utc)  # the endpoint answers for the month it is asked in
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    spent_at = max(now - timedelta(hours=1), month_start).replace(minute=0, second=0, microsecond=0)
    add_usage(context, bucket_start=spent_at, model=LLAMA, project="search", cost_nanos=60 * 10**9)  # $60
    with ServerThread(create_server(context, None)) as server:
        def status(query: str = "", token: str | None = "tok-search") -> httpx.Response:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return httpx.get(f"{server.url}/v1/budgets/status{query}", headers=headers, timeout=10)

        assert status().json() == {"decision": "allow", "reasons": [], "request": {"project": "search"},
                                   "as_of": None, "budgets": []}  # no check has run yet
        check(context, now)
        answer = status("?project=search").json()
        assert answer["decision"] == "allow" and [b["name"] for b in answer["budgets"]] == ["search"]
        [search] = answer["budgets"]
        assert Decimal(search["spent"]) == 60 and Decimal(search["amount"]) == 100 and search["forecast"] is not None
        denied = status(f"?project=search&model=together_ai/{LLAMA}").json()
        assert denied["decision"] == "deny" and [b["name"] for b in denied["budgets"]] == ["llama-search", "search"]
        assert denied["reasons"] == [f"budget llama-search: 60.00 of 50.00 USD spent in {now:%Y-%m}"]
        assert status(token=None).status_code == 401 and status(token="wrong").status_code == 401
        assert status("?project=other").status_code == 403
        with context.sessions() as session:  # served from the stored figures, not the ledger
            assert session.scalar(select(BudgetSnapshot.spent_nanos).where(BudgetSnapshot.name == "search")) == 60 * 10**9
    context.close()


def test_the_readmes_litellm_hook_refuses_a_call_over_budget(sqlite_url: str, slack: FakeSlack,
                                                               together: FakeTogether,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The hook as the README prints it, run against the real server. LiteLLM is not a dependency:
    its base class and FastAPI's HTTPException are stood in for (neither has behaviour the hook uses)."""
    import asyncio
    import re
    import sys
    import types

    from starlette.exceptions import HTTPException

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    [hook] = re.findall(r"```python\n(# budget_guard_hook\.py.*?)```", readme, re.S)
    litellm = types.ModuleType("litellm.integrations.custom_logger")
    litellm.CustomLogger = type("CustomLogger", (), {})  # type: ignore[attr-defined]
    fastapi = types.ModuleType("fastapi")
    fastapi.HTTPException = HTTPException  # type: ignore[attr-defined]
    for name, module in {"litellm": types.ModuleType("litellm"), "litellm.integrations": types.ModuleType("x"),
                         "litellm.integrations.custom_logger": litellm, "fastapi": fastapi}.items():
        monkeypatch.setitem(sys.modules, name, module)

    context = Context.open(make_settings(sqlite_url, slack, together, sources=[], budgets=[
        BudgetConfig(name="llama-search", amount=Decimal(50), scope={"project": "search", "model": LLAMA})]))
    now = datetime.now(timezone.utc)
    with ServerThread(create_server(context, None)) as server:
        monkeypatch.setenv("BUDGET_GUARD_URL", server.url)
        monkeypatch.setenv("BUDGET_GUARD_TOKEN_SEARCH", "tok-search")
        namespace: dict[str, Any] = {}
        exec(compile(hook, "budget_guard_hook.py", "exec"), namespace)
        handler = namespace["proxy_handler_instance"]
        key = types.SimpleNamespace(team_alias="search")
        request = {"model": f"together_ai/{LLAMA}", "messages": []}

        async def scenario() -> None:  # one event loop, as in the proxy
            check(context, now)
            assert await handler.async_pre_call_hook(key, None, request, "completion") is request  # under budget
            month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            add_usage(context, bucket_start=max(now - timedelta(hours=1), month_start).replace(minute=0, second=0,
                                                                                              microsecond=0),
                      model=LLAMA, project="search", cost_nanos=60 * 10**9)
            check(context, now)
            with pytest.raises(HTTPException) as refused:
                await handler.async_pre_call_hook(key, None, request, "completion")
            assert refused.value.status_code == 429 and "llama-search" in str(refused.value.detail)
            await handler.client.aclose()

        asyncio.run(scenario())
    context.close()


def test_on_exceed_takes_alert_or_stop_endpoints_only() -> None:
    from jobs.budgets.specs import BudgetError, parse_set
    from jobs.config.settings import ConfigError, load_settings
    from pricing.catalog import load_catalog

    catalog = load_catalog()
    assert parse_set(["gpus", "500", "mode=dedicated", "on_exceed=stop-endpoints"], catalog, set()).on_exceed == \
        "stop-endpoints"
    with pytest.raises(BudgetError, match="on_exceed= is one of alert, stop-endpoints"):
        parse_set(["gpus", "500", "on_exceed=shutdown"], catalog, set())
    config = Path.cwd() / "budget-guard.toml"
    config.write_text('alert_channel = "C0ALERTS"\n[[budgets]]\nname = "gpus"\namount = 5\non_exceed = "stop"\n')
    with pytest.raises(ConfigError, match="budgets 'gpus'.on_exceed: Input should be 'alert' or 'stop-endpoints'"):
        load_settings(config)
