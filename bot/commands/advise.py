"""`budget-guard advise [--json]`: serverless work that belongs on batch, ranked by saving."""

from __future__ import annotations

import argparse
import json
from datetime import timedelta
from typing import TYPE_CHECKING

from bot.commands.startup import StartupError, add_database_option, add_now_option, fail, open_context, utc_now
from pricing.money import count, usd

if TYPE_CHECKING:
    from jobs.advice.batch import Advice, Candidate

EMPTY_LEDGER = ("no usage recorded in the last {days} days: nothing to advise on. "
                "Record usage first (`budget-guard import FILE`, `budget-guard pull`, or POST /v1/usage).")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("advise", help="offline work on serverless that batch would make cheaper")
    parser.add_argument("--days", type=int, default=28, metavar="N",
                        help="complete days of usage to read (default: 28)")
    parser.add_argument("--json", action="store_true", help="JSON with exact amounts as decimal strings")
    add_now_option(parser)
    add_database_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from jobs.advice.batch import advise

    if args.days < 1:
        return fail(StartupError("--days must be at least 1, e.g. --days 28"))
    try:
        context = open_context(args)
    except StartupError as exc:
        return fail(exc)
    try:
        with context.sessions() as session:
            advice = advise(session, context.settings, context.catalog, now=args.now or utc_now(),
                            window_days=args.days)
    finally:
        context.close()
    if not advice.usage_seen:
        return fail(StartupError(EMPTY_LEDGER.format(days=args.days)), code=1)
    print(json.dumps(advice_json(advice), indent=2) if args.json else render(advice))
    return 0


def candidate_json(rank: int, c: Candidate) -> dict[str, object]:
    """One candidate with exact amounts as decimal strings."""
    return {
        "rank": rank,
        "model": c.model,
        "project": c.project,
        "feature": c.feature,
        "api_key": c.api_key,
        "monthly_tokens": c.monthly_tokens,
        "monthly_cost": str(c.monthly_cost),
        "monthly_batch_cost": str(c.monthly_cost - c.monthly_saving),
        "monthly_saving": str(c.monthly_saving),
        "batch_discount_percent": str(c.batch_discount),
        "reasons": list(c.reasons),
    }


def advice_json(advice: Advice) -> dict[str, object]:
    return {
        "window_start": advice.window_start.isoformat() if advice.window_start else None,
        "window_end": advice.window_end.isoformat() if advice.window_end else None,
        "days_observed": advice.days_observed,
        "total_saving": str(advice.total_saving),
        "candidates": [candidate_json(rank, c) for rank, c in enumerate(advice.candidates, start=1)],
        "notes": list(advice.notes),
    }


def render(advice: Advice) -> str:
    """The ranked list as the terminal shows it, with the total saving last."""
    lines = [f"Batch advice from serverless usage over {advice.days_observed} complete days"
             + (f" up to {advice.window_end - timedelta(days=1)}" if advice.window_end else "")]
    if not advice.candidates:
        lines.append("No serverless work looks like offline work that batch would make cheaper.")
    for rank, c in enumerate(advice.candidates, start=1):
        lines.append("")
        lines.append(f"{rank}. {c.model}  ({c.who})")
        lines.append(f"   {count(c.monthly_tokens)} tokens/month; {usd(c.monthly_cost)}/month on serverless, "
                     f"{usd(c.monthly_cost - c.monthly_saving)} on batch: saves {usd(c.monthly_saving)}/month")
        lines.extend(f"   - {reason}" for reason in c.reasons)
    lines.extend(["", *(f"Note: {note}" for note in advice.notes)] if advice.notes else [])
    lines.append("")
    lines.append(f"Total saving on batch: {usd(advice.total_saving)}/month")
    return "\n".join(lines)
