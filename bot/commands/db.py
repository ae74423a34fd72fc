"""`budget-guard db upgrade`: bring the database to the newest schema; `db check`: is it there?"""

from __future__ import annotations

import argparse

from bot.commands.startup import StartupError, add_database_option, fail, settings_from_args, upgrade_database


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("db", help="database schema: upgrade or check")
    actions = parser.add_subparsers(dest="db_action", metavar="ACTION", required=True)
    for name, text in (("upgrade", "apply every pending migration"), ("check", "exit 1 if migrations are pending")):
        action = actions.add_parser(name, help=text)
        add_database_option(action)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from db.engine import make_engine
    from db.schema import SchemaOutOfDate, check_up_to_date, head_revision

    try:
        settings = settings_from_args(args)
        if args.db_action == "upgrade":
            upgrade_database(settings.database_url)
            print(f"database is at revision {head_revision()} (newest)")
            return 0
    except StartupError as exc:
        return fail(exc)
    engine = make_engine(settings.database_url)
    try:
        check_up_to_date(engine)
    except SchemaOutOfDate as exc:
        return fail(exc, 1)
    except Exception as exc:  # noqa: BLE001 - one line, not a traceback
        return fail(StartupError(f"database: cannot connect ({type(exc).__name__})"))
    finally:
        engine.dispose()
    print(f"database is at revision {head_revision()} (newest)")
    return 0
