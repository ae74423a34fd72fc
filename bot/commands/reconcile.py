"""`budget-guard reconcile [--json]`: the ledger's cost per model and UTC day against what the
provider billed (OpenAI's costs API) and what LiteLLM priced the calls at; prints, posts nothing."""

from __future__ import annotations

import argparse
import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING

from bot.commands.startup import StartupError, add_database_option, fail, open_context
from pricing.money import percent, usd

if TYPE_CHECKING:  # the command's work is imported when it runs: `budget-guard --help` stays quick
    from jobs.budgets.reconcile import DayComparison, ModelDrift, Reconciliation


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("reconcile", help="compare the ledger's cost with the provider's bill")
    parser.add_argument("--since", type=_day, help="first UTC day (YYYY-MM-DD); default: the month of yesterday")
    parser.add_argument("--until", type=_day, help="last UTC day, included (YYYY-MM-DD); default: yesterday")
    parser.add_argument("--json", action="store_true", help="JSON with exact amounts as decimal strings")
    add_database_option(parser)
    parser.set_defaults(func=run)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: use YYYY-MM-DD, e.g. 2026-11-01") from None


def run(args: argparse.Namespace) -> int:
    from jobs.budgets.reconcile import drift_window, reconcile

    since, until = drift_window(datetime.now(timezone.utc))
    since = args.since or since
    until = args.until + timedelta(days=1) if args.until else until
    if until <= since:
        return fail(StartupError("--until is before --since"))
    try:
        context = open_context(args)
    except StartupError as exc:
        return fail(exc)
    try:
        result = reconcile(context, since, until)
        share = context.settings.reconcile_drift_percent
    finally:
        context.close()
    print(json.dumps(as_json(result), indent=2) if args.json else render(result, share))
    return 0


def _amount(value: Decimal) -> str:
    return f"{value:f}"


def _share(value: Decimal | None) -> str:
    return "-" if value is None else f"{'+' if value >= 0 else '-'}{percent(abs(value))}"


def day_json(day: DayComparison) -> dict[str, object]:
    return {"biller": day.biller, "day": day.day.isoformat(), "model": day.model, "ours": _amount(day.ours),
            "theirs": _amount(day.theirs), "difference": _amount(day.difference),
            "share": _amount(day.share) if day.share is not None else None, "unpriced_tokens": day.unpriced_tokens,
            "our_tokens": day.our_tokens, "their_tokens": day.their_tokens, "sources": list(day.sources)}


def model_json(model: ModelDrift) -> dict[str, object]:
    return {"biller": model.biller, "model": model.model, "ours": _amount(model.ours), "theirs": _amount(model.theirs),
            "share": _amount(model.share) if model.share is not None else None, "days": model.days,
            "drifting": model.drifting, "cause": model.cause}


def as_json(result: Reconciliation) -> dict[str, object]:
    return {"since": result.since.isoformat(), "until": (result.until - timedelta(days=1)).isoformat(),
            "models": [model_json(m) for m in result.models], "days": [day_json(d) for d in result.days],
            "unattributed": {k: _amount(v) for k, v in result.unattributed.items()}, "errors": result.errors}


def render(result: Reconciliation, drift_percent: Decimal) -> str:
    from jobs.budgets.reconcile import biller_label

    last = result.until - timedelta(days=1)
    lines = [f"reconcile {result.since} to {last} (UTC days); drift above {drift_percent}% is flagged"]
    if not result.days:
        lines.append("nothing to compare: no LiteLLM costs in the ledger and no OpenAI bill read"
                     + (" (see the errors below)" if result.errors else ""))
    else:
        header = ("biller", "model", "days", "budget-guard", "billed", "difference", "")
        rows = [header] + [
            (m.biller, m.model, str(m.days), usd(m.ours), usd(m.theirs), _share(m.share), "DRIFT" if m.drifting else "ok")
            for m in result.models
        ]
        lines.extend(_table(rows))
        for model in result.models:
            if model.drifting:
                lines.append(f"  {model.model} ({biller_label(model.biller)}): {model.cause}")
        lines.append("")
        rows = [("biller", "day", "model", "budget-guard", "billed", "difference")] + [
            (d.biller, d.day.isoformat(), d.model, usd(d.ours) + (f" (+{d.unpriced_tokens:,} unpriced tokens)"
                                                                   if d.unpriced_tokens else ""),
             usd(d.theirs), _share(d.share)) for d in result.days
        ]
        lines.extend(_table(rows))
    for biller, amount in result.unattributed.items():
        lines.append(f"{biller}: {usd(amount)} billed for items that name no model (tools, storage); not compared")
    lines.extend(f"error: {error}" for error in result.errors)
    return "\n".join(lines)


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
            for row in rows]
