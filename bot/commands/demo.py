"""`budget-guard demo`: the whole bot on a realistic month, with no Slack, network or configuration."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import datetime, timedelta, timezone
from decimal import ROUND_UP, Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from bot.commands.startup import instant

if TYPE_CHECKING:
    from jobs.config.context import Context
    from jobs.config.sections import BudgetConfig

SAMPLE_QUOTE = "compare llama-3.3-70b deepseek-v3 qwen3-235b 3k/1k 100k/day"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run every job on a generated month of usage; print what Slack would see")
    parser.add_argument("--dir", default=None, help="folder for the demo ledger (default: a new temporary folder)")
    parser.add_argument("--out", default=None, help="where Block Kit JSON and the chart go (default: DIR/out)")
    parser.add_argument("--now", type=instant, default=None, metavar="TIME",
                        help="run as if it were TIME (ISO 8601, UTC unless it says; default: now)")
    parser.set_defaults(func=run)


def banner(title: str) -> None:
    print(f"\n{'═' * 78}\n{title}\n{'═' * 78}")


def run(args: argparse.Namespace) -> int:
    from bot.commands.check import render_text
    from bot.commands.digest import dry_run_digest
    from bot.commands.quote import render_table
    from bot.views.alerts import alert_message
    from bot.views.blocks import to_dicts
    from bot.views.quote import quote_blocks
    from db.schema import upgrade
    from jobs.budgets.check import check_budgets
    from jobs.config.context import Context
    from jobs.config.settings import given_settings
    from jobs.usage.demo import ALERT_CHANNEL, DEMO_OFFLINE, DIGEST_CHANNEL, generate, simulated_now
    from pricing.grammar import parse
    from pricing.quote import build_quote

    started = time.perf_counter()
    folder = Path(args.dir or tempfile.mkdtemp(prefix="budget-guard-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    out = Path(args.out) if args.out else folder / "out"
    out.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{folder / 'demo.db'}"
    upgrade(url)
    real_now = args.now or datetime.now(timezone.utc)
    now = simulated_now(real_now)
    base = given_settings(database_url=url, tz="UTC", alert_channel=ALERT_CHANNEL, digest_channel=DIGEST_CHANNEL,
                          offline=DEMO_OFFLINE)
    context = Context.open(base)
    buckets = generate(context, now=now)
    settings = base.model_copy(update={"budgets": size_budgets(context, now)})
    context.settings = settings
    print(f"budget-guard demo: a ledger of {buckets:,} hourly buckets in {folder / 'demo.db'}")
    print(simulation_note(real_now, now))

    banner("Alerts (posted to #demo-alerts, each once)")
    posted = check_budgets(context, now=now, render=alert_message)
    for draft in posted:
        print(render_text(draft) + "\n")
    (out / "alerts.json").write_text(json.dumps([alert_message(d, i + 1)[1] for i, d in enumerate(posted)], indent=2))

    advice_text = show_advice(context, now)
    banner("Batch advice (budget-guard advise)")
    print(advice_text)

    banner("Daily digest (posted to #demo-digest)")
    print(dry_run_digest(context, now, out))

    banner(f"/costquote {SAMPLE_QUOTE}")
    result = build_quote(parse(SAMPLE_QUOTE), context.catalog)
    print(render_table(result))
    (out / "costquote.json").write_text(json.dumps(to_dicts(quote_blocks(result)), indent=2))

    print(f"\nBlock Kit JSON and the chart are in {out}")
    print(f"done in {time.perf_counter() - started:.1f} s; nothing was posted: no Slack is configured.")
    context.close()
    return 0


def simulation_note(real_now: datetime, now: datetime) -> str:
    """What "today" the demo plays, and why it is not the real one when it is not."""
    played = f"{now:%a, %b} {now.day}, {now.year}, {now:%H:%M} UTC"
    if now == real_now:
        return f"The demo plays today, {played}, with {now.day - 1} full days of {now:%B} behind it."
    return (f"The demo plays {played} as \"today\": on {real_now:%b} {real_now.day} too little of {real_now:%B} "
            f"has passed for a realistic month-to-date, so it replays a day of {now:%B} "
            f"(same weekday and time, {now.day - 1} full days into the month).")


def size_budgets(context: Context, now: datetime) -> list[BudgetConfig]:
    """One budget 90% used (an actual alert), one that the forecast says will be exceeded."""
    from db.rollups import daily_rows, local_midnight
    from jobs.config.sections import BudgetConfig
    from jobs.forecast.projection import fraction_of_day, project
    from jobs.usage.demo import ALERT_CHANNEL

    today = now.date()
    with context.sessions() as session:
        rows = daily_rows(session, local_midnight(today - timedelta(days=62), context.settings.zone),
                          now + timedelta(hours=1), context.settings.zone)
    _, by_project = project(rows, today=today, day_fraction=fraction_of_day(now), catalog=context.catalog,
                            group_of=lambda row: row.project)
    search, support = by_project["search"], by_project["support"]
    cents = Decimal("0.01")
    near = (search.month_to_date / Decimal("0.9")).quantize(cents, ROUND_UP)
    between = ((support.month_to_date + support.point) / 2).quantize(cents, ROUND_UP)
    return [
        BudgetConfig(name="search-chat", amount=near, scope={"project": "search"}, thresholds=[50, 80, 100],
                     forecast=False, channel=ALERT_CHANNEL),
        BudgetConfig(name="support", amount=max(between, support.month_to_date + cents), scope={"project": "support"},
                     thresholds=[100], forecast=True, channel=ALERT_CHANNEL),
        BudgetConfig(name="all-llm-spend", amount=Decimal(100000), channel=ALERT_CHANNEL),
    ]


def show_advice(context: Context, now: datetime) -> str:
    from bot.commands.advise import render as render_advice
    from jobs.advice.batch import advise

    with context.sessions() as session:
        return render_advice(advise(session, context.settings, context.catalog, now=now))
