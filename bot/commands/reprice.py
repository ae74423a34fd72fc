"""`budget-guard reprice --since DATE`: re-cost recorded usage with the current prices, on purpose."""

from __future__ import annotations

import argparse

from bot.commands.startup import StartupError, add_database_option, fail, open_context
from bot.commands.usage import parse_moment
from pricing.money import usd


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("reprice", help="re-cost usage since DATE with the current prices and names",
                                   description="Re-cost recorded token usage since DATE with the prices in effect "
                                               "at its time, resolving its model names again (after a [[prices]] "
                                               "correction, or an [[aliases]] entry for a name that did not resolve).")
    parser.add_argument("--since", required=True, help="first day to re-cost (YYYY-MM-DD in TZ, or an ISO time)")
    parser.add_argument("--dry-run", action="store_true", help="report what would change; change nothing")
    add_database_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from jobs.usage.reprice import reprice

    try:
        context = open_context(args)
    except StartupError as exc:
        return fail(exc)
    try:
        since = parse_moment(args.since, context.settings.zone)
        result = reprice(context, since, dry_run=args.dry_run)
    except StartupError as exc:
        return fail(exc)
    finally:
        context.close()
    verb = "would change" if args.dry_run else "changed"
    sign = "+" if result.change >= 0 else "-"
    print(
        f"{result.rows:,} bucket row(s) since {args.since} checked, {result.changed:,} {verb}; "
        f"cost {usd(result.old_cost)} -> {usd(result.new_cost)} ({sign}{usd(abs(result.change))})"
    )
    if result.newly_priced or result.newly_unpriced:
        print(f"{result.newly_priced:,} row(s) newly priced, {result.newly_unpriced:,} now unpriced")
    for name, counted_as in sorted(result.renamed.items())[:20]:
        print(f"{name} {'would count' if args.dry_run else 'now counts'} as {counted_as}")
    if len(result.renamed) > 20:
        print(f"...and {len(result.renamed) - 20:,} more names")
    return 0
