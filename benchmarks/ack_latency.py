"""Ack latency with a slow Slack: signed button clicks (Acknowledge, Snooze, Show breakdown) and
`/budget` commands (list, set by a named admin, set by a user-group admin) sent to a real
`budget-guard serve` while the fake Web API takes 4 s to answer every call and response_url post.
Prints p50/p99 of the HTTP answer per kind (target: p99 under 300 ms on a 2-core machine), then
waits for the work that follows the acks and says how much of it was done, once.

    python benchmarks/ack_latency.py [--requests 240] [--rate 20] [--slack-seconds 4]

Requests arrive at a steady rate (open loop, as clicks do), each on its own connection, so the
figures show whether an answer waits on Slack rather than how many requests two cores can serve
back to back (benchmarks/load.py measures that).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fakes.slack_api import FakeSlack  # noqa: E402
from tests.harness import (  # noqa: E402
    BOT_TOKEN,
    SIGNING_SECRET,
    block_actions_payload,
    interaction_body,
    signed_headers,
    slash_command_body,
)
from tests.processes import ServeProcess, wait_until  # noqa: E402

BUTTONS = ("alert_ack", "alert_snooze", "alert_breakdown")
COMMANDS = {"/budget list": ("list", "U0ANYONE"), "/budget set (admin)": ("set bench 500 project=p", "U0ADMIN"),
            "/budget set (group)": ("set bench-g 700 project=q", "U0GROUPIE")}
MODEL = "meta-llama/Llama-3.3-70B-Instruct-Turbo"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))] if ordered else float("nan")


def post_an_alert(database_url: str, slack: FakeSlack) -> dict:
    """Record $600 of a $1,000 budget and run the check: the alert whose buttons are clicked."""
    from bot.views.alerts import alert_message
    from db.models import UsageBucket, to_nanos
    from db.schema import upgrade
    from jobs.budgets.check import check_budgets
    from jobs.config.context import Context
    from jobs.config.sections import BudgetConfig
    from jobs.config.settings import Settings
    from jobs.runtime.outbox import send_pending
    from jobs.runtime.scheduler import outbox_client

    upgrade(database_url)
    context = Context.open(Settings(database_url=database_url, slack_bot_token=BOT_TOKEN, slack_api_url=slack.url,
                                    alert_channel="C0ALERTS",
                                    budgets=[BudgetConfig(name="bench", amount=Decimal(1000), forecast=False)]))
    tokens = int(Decimal(600) / Decimal("0.88") * 1_000_000)
    hour = (datetime.now(timezone.utc) - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    with context.sessions() as session, session.begin():
        session.add(UsageBucket(bucket_start=hour, width="1h", source="bench", model=MODEL, mode="serverless",
                                project="p", feature="chat", api_key="", environment="", tags="",
                                input_tokens=tokens, cached_input_tokens=0, output_tokens=0, requests=tokens // 1000,
                                uptime_minutes=0, cost_nanos=to_nanos(Decimal(tokens) * Decimal("0.88") / 1_000_000)))
    check_budgets(context, render=alert_message)
    send_pending(context.sessions, outbox_client(context))
    context.close()
    [message] = slack.messages
    return message


def request_for(kind: str, alert: dict, slack: FakeSlack) -> str:
    if kind in BUTTONS:
        value = next(e["value"] for e in alert["blocks"][-1]["elements"] if e["action_id"] == kind)
        return interaction_body(block_actions_payload(alert, kind, value, response_url=slack.response_url(kind)))
    text, user = COMMANDS[kind]
    return slash_command_body(text, "/budget", user_id=user, response_url=slack.response_url(kind))


async def drive(base: str, alert: dict, slack: FakeSlack, requests: int, rate: float) -> tuple[dict, dict]:
    kinds = [*BUTTONS, *COMMANDS]
    times: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, list[str]] = defaultdict(list)

    async def one(client: httpx.AsyncClient, kind: str) -> None:
        body = request_for(kind, alert, slack)
        started = time.perf_counter()
        try:
            response = await client.post(f"{base}/slack/events", content=body, headers=signed_headers(body))
        except httpx.HTTPError as exc:
            errors[kind].append(type(exc).__name__)
            return
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            errors[kind].append(f"HTTP {response.status_code}")
        else:
            times[kind].append(elapsed)

    async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=200)) as client:
        tasks = []
        start = time.perf_counter()
        for n in range(requests):
            await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(client, kinds[n % len(kinds)])))
        await asyncio.gather(*tasks)
    return times, errors


def line(label: str, t: list[float], errors: list[str]) -> str:
    return (f"  {label:22s} {len(t):5d} ok, {len(errors)} errors;  p50 {percentile(t, 50) * 1000:7.1f} ms"
            f"  p99 {percentile(t, 99) * 1000:7.1f} ms  max {max(t, default=float('nan')) * 1000:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=240)
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second")
    parser.add_argument("--slack-seconds", type=float, default=4.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, FakeSlack(token=BOT_TOKEN) as slack:
        workdir = Path(tmp)
        url = f"sqlite:///{workdir / 'ack.db'}"
        slack.set_usergroup("S0ADMINS", ["U0GROUPIE"])
        alert = post_an_alert(url, slack)
        config = workdir / "budget-guard.toml"
        config.write_text('alert_channel = "C0ALERTS"\n[[budgets]]\nname = "bench"\namount = 1000\nforecast = false\n')
        env = {"DATABASE_URL": url, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
               "SLACK_API_URL": slack.url, "LOG_LEVEL": "WARNING", "BUDGET_GUARD_CONFIG": str(config),
               "ADMINS": "U0ADMIN,S0ADMINS"}
        with ServeProcess(env, workdir) as serve:
            # The admin group is read in the background at start; then Slack turns slow.
            wait_until(lambda: slack.calls_to("usergroups.users.list"), timeout=10)
            time.sleep(0.2)
            slack.set_latency(args.slack_seconds)
            before = {m: len(slack.calls_to(m)) for m in ("chat.update",)}
            started = time.monotonic()
            times, errors = asyncio.run(drive(serve.url, alert, slack, args.requests, args.rate))
            sent_for = time.monotonic() - started
            updates_wanted = len(times["alert_ack"]) + len(times["alert_snooze"])
            breakdowns_wanted = len(times["alert_breakdown"])

            def work_done() -> bool:
                updates = len(slack.calls_to("chat.update")) - before["chat.update"]
                breakdowns = len([p for p in slack.response_posts if p.key == "alert_breakdown"])
                return updates >= updates_wanted and breakdowns >= breakdowns_wanted

            wait_until(work_done, timeout=120, interval=0.5)
            finished_after = time.monotonic() - started
            serve.stop()
        updates = len(slack.calls_to("chat.update")) - before["chat.update"]
        breakdowns = len([p for p in slack.response_posts if p.key == "alert_breakdown"])
        later_replies = len([p for p in slack.response_posts if p.key.startswith("/budget")])
    print(f"Ack latency: {args.requests} signed requests at {args.rate:.0f}/s, answered in {sent_for:.1f} s, on "
          f"{os.cpu_count()} CPUs; every Slack call takes {args.slack_seconds:.0f} s (target p99 < 300 ms)")
    buttons = [t for k in BUTTONS for t in times[k]]
    budget = [t for k in COMMANDS for t in times[k]]
    print(line("buttons (all)", buttons, [e for k in BUTTONS for e in errors[k]]))
    for kind in BUTTONS:
        print(line(kind, times[kind], errors[kind]))
    print(line("/budget (all)", budget, [e for k in COMMANDS for e in errors[k]]))
    for kind in COMMANDS:
        print(line(kind, times[kind], errors[kind]))
    print(f"  work after the acks, done {finished_after:.1f} s after the first request: {updates} of "
          f"{updates_wanted} message updates, {breakdowns} of {breakdowns_wanted} breakdowns; "
          f"{later_replies} /budget replies through response_url (0 expected: all answered in the ack)")


if __name__ == "__main__":
    main()
