"""`budget-guard pull [SOURCE]`: pull usage from every configured source, or one."""

from __future__ import annotations

import argparse
import sys

from bot.commands.startup import StartupError, add_database_option, fail, open_context


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("pull", help="pull usage from the configured sources now")
    parser.add_argument("source", nargs="?", help="only this source (by name)")
    add_database_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from jobs.usage.pull import UnknownSource, pull_sources

    try:
        context = open_context(args)
    except StartupError as exc:
        return fail(exc)
    try:
        if not context.settings.sources:
            print("no sources configured: add [[sources]] to budget-guard.toml", file=sys.stderr)
            return 2
        outcomes = pull_sources(context, only=args.source)
    except UnknownSource as exc:
        return fail(exc)
    finally:
        context.close()
    for outcome in outcomes:
        if outcome.result is not None:
            r = outcome.result
            print(
                f"{outcome.source}: ok, {r.since:%Y-%m-%d %H:%M} to {r.until:%Y-%m-%d %H:%M} UTC, "
                f"{r.pages} page(s), {r.rows} bucket row(s)"
            )
            for note in r.notes:
                print(f"  note: {note}")
        else:
            print(f"{outcome.source}: FAILED: {outcome.error}")
    return 0 if all(o.ok for o in outcomes) else 1
