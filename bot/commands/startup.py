"""What every command does first: read settings and open the database, failing in one line.

Cheap to import (every command module does, to build the parser): what the functions below
need, they import when called."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from db import EMBEDDED_DATABASE_URL

if TYPE_CHECKING:
    from jobs.config.context import Context
    from jobs.config.settings import Settings


class StartupError(Exception):
    """One line that says what is wrong and how to fix it."""


def add_database_option(parser: argparse.ArgumentParser, *, on_a_sub_command: bool = False) -> None:
    """`--database-url`, whose help says where the database is when it is not given.

    `on_a_sub_command`: for a sub-command whose parent has the option too, so either place works
    (SUPPRESS keeps the sub-command from resetting the parent's value to None)."""
    parser.add_argument("--database-url", default=argparse.SUPPRESS if on_a_sub_command else None, metavar="URL",
                        help=f"the database (default: DATABASE_URL, or database_url in budget-guard.toml, "
                             f"else {EMBEDDED_DATABASE_URL}: a file in the current folder)")


def instant(text: str) -> datetime:
    """An `argparse` type: an ISO 8601 time (UTC unless it says otherwise), as an aware UTC datetime."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO 8601 time such as 2026-12-01T09:00Z, not {text!r}") from None
    return (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def add_now_option(parser: argparse.ArgumentParser) -> None:
    """`--now TIME`: see the ledger as of TIME (e.g. the demo's day) instead of the clock's now."""
    parser.add_argument("--now", type=instant, default=None, metavar="TIME",
                        help="as if it were TIME (ISO 8601, UTC unless it says; default: now)")


def utc_now() -> datetime:
    """The clock's time, in UTC."""
    return datetime.now(timezone.utc)


def now_from(args: object) -> datetime:
    """`--now` if given, else the current time (UTC)."""
    return getattr(args, "now", None) or utc_now()


def settings_from_args(args: object) -> Settings:
    """Settings from the environment and TOML file, with `--database-url` winning if given."""
    from jobs.config.settings import ConfigError, load_settings

    overrides = {}
    if getattr(args, "database_url", None):
        overrides["database_url"] = args.database_url  # type: ignore[attr-defined]
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        raise StartupError(f"configuration: {exc}") from None


def open_context(args: object, *, require_schema: bool = True) -> Context:
    """Settings plus a database whose schema is up to date."""
    from db.schema import SchemaOutOfDate, check_up_to_date
    from jobs.config.context import Context
    from jobs.config.settings import ConfigError

    settings = settings_from_args(args)
    try:
        context = Context.open(settings, with_synced_prices=False)
    except ConfigError as exc:
        raise StartupError(f"configuration: {exc}") from None
    if require_schema:
        try:
            check_up_to_date(context.engine)
        except SchemaOutOfDate as exc:
            context.close()
            raise StartupError(f"database: {exc}") from None
        except Exception as exc:
            context.close()
            raise StartupError(f"database: cannot connect ({type(exc).__name__}: {_first_line(exc)})") from None
        context.reload_catalog()
        _check_file_budgets(context)
    return context


def _check_file_budgets(context: Context) -> None:
    """Every model a file budget names must be one the catalog or the ledger knows."""
    from jobs.budgets.specs import FileBudgetError, file_budgets, ledger_models

    try:
        with context.sessions() as session:
            file_budgets(context.settings, context.catalog, lambda: ledger_models(session))
    except FileBudgetError as exc:
        context.close()
        raise StartupError(f"configuration: {exc}") from None


def fail(error: Exception, code: int = 2) -> int:
    print(f"budget-guard: {error}", file=sys.stderr)
    return code


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""


def upgrade_database(url: str) -> None:
    """Apply migrations; a database that cannot be reached is one clear line."""
    from db.schema import upgrade

    try:
        upgrade(url)
    except Exception as exc:
        raise StartupError(f"database: cannot upgrade ({type(exc).__name__}: {_first_line(exc)})") from None
