"""Engines and sessions for SQLite (the embedded default) and PostgreSQL."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """An engine for `url`; SQLite files get WAL mode and a busy timeout so threads can share them."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=20, pool_pre_ping=True)


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


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work commits at the end of the block, or rolls back on any error."""
    with sessions() as session, session.begin():
        yield session
