"""`budget-guard serve`: Slack (HTTP or Socket Mode), usage ingest, health and metrics, plus the scheduler."""

from __future__ import annotations

import argparse
import logging

from bot.commands.startup import (
    StartupError,
    add_database_option,
    fail,
    open_context,
    settings_from_args,
    upgrade_database,
)

log = logging.getLogger("budget_guard.serve")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="run the bot: Slack, ingest, health, metrics, schedules")
    parser.add_argument("--host", default=None, help="address to bind (default 0.0.0.0, or HOST)")
    parser.add_argument("--port", type=int, default=None, help="port (default 3000, or PORT)")
    add_database_option(parser)
    parser.add_argument("--no-scheduler", action="store_true", help="serve requests only; run no scheduled jobs")
    parser.add_argument("--upgrade-db", action="store_true", help="apply database migrations before starting")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bot.logs import setup_logging

    try:
        if args.upgrade_db:
            upgrade_database(settings_from_args(args).database_url)
        context = open_context(args)
    except StartupError as exc:
        return fail(exc)
    settings = context.settings
    setup_logging(settings, level="ERROR")  # quiet until the start-up checks pass: a failure is one line
    from bot.runtime import Runtime
    from bot.slack_link import NOT_CONFIGURED, UNREACHABLE

    try:
        runtime = Runtime.start(context, scheduler=not args.no_scheduler)
    except StartupError as exc:
        context.close()
        return fail(exc)
    logging.getLogger().setLevel(settings.log_level)
    if runtime.slack.state == NOT_CONFIGURED:
        log.warning("Slack is not configured (no SLACK_BOT_TOKEN): serving usage ingest, health and metrics only")
    elif runtime.slack.state == UNREACHABLE:
        log.warning("%s: serving usage ingest, health and metrics; trying Slack again in the background",
                    runtime.slack.detail)
    host = args.host or settings.host
    port = args.port or settings.port
    try:
        if settings.slack_app_token:
            runtime.run_socket_mode(host, port)
        else:
            runtime.run_http(host, port)
    finally:
        runtime.stop()
        context.close()
    return 0
