"""Rows recorded once: an INSERT that does nothing when a row with the same unique key exists, in
the dialect the session is bound to (SQLite's or PostgreSQL's; both know ON CONFLICT). The outbox,
operator notices and Slack deliveries record through it, and the unique index decides which of
two writers was first."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def dialect_insert(session: Session) -> Callable[..., Any]:
    """The INSERT construct of the session's database, which knows ON CONFLICT."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def insert_once(session: Session, model: type[Any], values: dict[str, Any], *, unique: Sequence[str]) -> bool:
    """Insert a `model` row of `values` unless one with the same `unique` columns exists; True if it was."""
    key = inspect(model).primary_key[0]
    statement = dialect_insert(session)(model).values(**values).on_conflict_do_nothing(index_elements=list(unique))
    return session.execute(statement.returning(key)).scalar() is not None
