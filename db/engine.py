"""Engines and sessions for SQLite (the embedded default) and PostgreSQL."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event, inspect, make_url
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """An engine for `url`; SQLite files get WAL mode and a busy timeout so threads can share them."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=20, pool_pre_ping=True)


def sqlite_file(url: str | URL) -> Path | None:
    """The file a SQLite URL opens (relative to the working directory if the URL's path is);
    None for an in-memory database or another engine."""
    url = make_url(url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    database = url.database
    if database.startswith("file:"):  # a URI filename (`?uri=true`)
        if url.query.get("mode") == "memory":
            return None
        database = database[len("file:"):].split("?", 1)[0]
    return Path(database)


def describe_url(url: str | URL) -> str:
    """The database's URL fit to print: any password shown as ***, and a relative SQLite file
    followed by the absolute path it resolves to here."""
    url = make_url(url)
    if "password" in url.query:
        url = url.update_query_dict({"password": "***"})
    text = url.render_as_string(hide_password=True).replace("password=%2A%2A%2A", "password=***")
    path = sqlite_file(url)
    if path is not None and not path.is_absolute():
        text += f" ({path.resolve()})"
    return text


def write_lock(engine: Engine) -> AbstractContextManager[object]:
    """Hold while writing to a SQLite file: its one writer is then queued here, in order, instead of
    in SQLite's busy handler, which sleeps up to 100 ms between tries (a long tail under load).
    PostgreSQL takes concurrent writers itself: no lock."""
    if engine.dialect.name != "sqlite":
        return nullcontext()
    with _LOCKS_LOCK:
        return _WRITE_LOCKS.setdefault(engine, threading.Lock())


_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()
_LOCKS_LOCK = threading.Lock()


def dialect_insert(session: Session, table: Any) -> postgresql.Insert | sqlite.Insert:
    """`INSERT INTO table` in the session's dialect, which knows `ON CONFLICT` (SQLite and PostgreSQL only)."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"budget-guard supports SQLite and PostgreSQL, not {name}")


def insert_once(session: Session, model: type[Any], values: dict[str, Any], *, unique: Sequence[str]) -> bool:
    """Insert a `model` row of `values` unless one with the same `unique` columns exists; True if it was.
    The unique index decides which of two writers was first."""
    key = inspect(model).primary_key[0]
    statement = dialect_insert(session, model).values(**values).on_conflict_do_nothing(index_elements=list(unique))
    return session.execute(statement.returning(key)).scalar() is not None


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work commits at the end of the block, or rolls back on any error."""
    with sessions() as session, session.begin():
        yield session
