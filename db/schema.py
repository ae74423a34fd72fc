"""Alembic migrations: upgrade to head, and tell whether a database is up to date."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from db.engine import describe_url, sqlite_file

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class SchemaOutOfDate(Exception):
    """The database is not at the newest migration."""


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str) -> None:
    """Bring the database at `url` to the newest schema."""
    command.upgrade(alembic_config(url), "head")


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head() or ""


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def check_up_to_date(engine: Engine) -> None:
    """Raise SchemaOutOfDate naming the database (password hidden) and the command that fixes it.

    A SQLite file that does not exist has no schema and is not opened: opening it would leave an
    empty file behind."""
    path = sqlite_file(engine.url)
    missing = path is not None and not path.exists()
    current, head = (None if missing else current_revision(engine)), head_revision()
    if current != head:
        state = ("has no schema (the file does not exist yet)" if missing else "has no schema" if current is None
                 else f"is at revision {current}, not {head}")
        raise SchemaOutOfDate(f"the database {describe_url(engine.url)} {state}; run `budget-guard db upgrade`")
