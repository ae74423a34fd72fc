"""`budget-guard check [--dry-run]`: the budget check now, through the same claims and outbox."""

from __future__ import annotations

import argparse
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from bot.commands.startup import StartupError, add_database_option, fail, open_context
from pricing.money import usd

if TYPE_CHECKING:
    from jobs.budgets.rules import AlertDraft


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("check", help="check budgets now and post new alerts")
    parser.add_argument("--dry-run", action="store_true", help="print the alerts it would post; post nothing")
    add_database_option(parser)
    parser.set_defaults(func=run)


def render_text(draft: AlertDraft) -> str:
    """An alert as the terminal shows it."""
    lines = [f"[{draft.kind}] {draft.headline}  → {draft.channel}"]
    lines.extend(f"  {d}" for d in draft.details)
    lines.extend(f"  • {d.label}: {usd(d.amount)}" for d in draft.drivers)
    lines.append(f"  what to do: {draft.advice}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from bot.runtime import command_outbox_policy, renderers
    from jobs.budgets.check import check_budgets
    from jobs.runtime import claims
    from jobs.runtime.outbox import send_pending
    from jobs.runtime.scheduler import outbox_client

    try:
        context = open_context(args)
    except StartupError as exc:
        return fail(exc)
    try:
        if args.dry_run:
            drafts = check_budgets(context, dry_run=True)
            print("\n\n".join(render_text(d) for d in drafts) if drafts else "No new alerts.")
            return 0
        now = datetime.now(timezone.utc)
        period = f"manual-{now:%Y-%m-%dT%H:%M:%S.%fZ}-{uuid.uuid4().hex[:6]}"
        posted = claims.run_once(context.sessions, "check", period,
                                 lambda: check_budgets(context, now=now, render=renderers()["alert"]))
        for draft in posted:
            print(render_text(draft))
        if context.settings.slack_bot_token:
            report = send_pending(context.sessions, outbox_client(context), policy=command_outbox_policy(context))
            failed = f"; {report.failed + report.skipped} not sent (`budget-guard outbox` lists them)" \
                if report.failed + report.skipped else ""
            print(f"{len(posted)} new alerts; posted {report.sent} messages; {report.deferred} waiting in the outbox"
                  + failed + (f" ({report.errors[0]})" if report.errors else ""))
        else:
            print(f"{len(posted)} new alerts queued; set SLACK_BOT_TOKEN to post them (they stay in the outbox)")
        return 0
    finally:
        context.close()
