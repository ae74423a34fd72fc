"""`budget-guard runway [--json]`: when the prepaid balance reaches $0 at the forecast pace.

The balance and top-ups come from `[prepaid]` in budget-guard.toml and `/budget credit`; the
spend since, from the ledger; the pace, from the month-end forecast (`jobs.forecast.runway`)."""

from __future__ import annotations

import argparse
import json

from bot.commands.startup import StartupError, add_database_option, fail, open_context, utc_now


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("runway", help="when the prepaid balance runs out, with its 80%% range")
    parser.add_argument("--json", action="store_true", help="JSON with exact amounts as decimal strings")
    add_database_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bot.views.runway import NO_BALANCE, runway_json, runway_terminal
    from jobs.forecast.runway import current_runway

    try:
        context = open_context(args)
    except StartupError as exc:
        return fail(exc)
    try:
        runway = current_runway(context, now=utc_now())
    finally:
        context.close()
    if runway is None:
        return fail(StartupError(NO_BALANCE.replace("`", "")), code=1)
    print(json.dumps(runway_json(runway), indent=2) if args.json else runway_terminal(runway))
    return 0
