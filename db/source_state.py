"""Pulled sources' state: each one's cursor, last outcomes and last note."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from db.models import SourceState


def source_state(session: Session, name: str) -> SourceState | None:
    """A pulled source's cursor and last outcomes, if it ran before."""
    return session.get(SourceState, name)


def record_source_cursor(session: Session, name: str, cursor: datetime) -> None:
    """Move a source's cursor forward (never back): the next pull starts there, less its overlap."""
    state = session.get(SourceState, name)
    if state is None:
        session.add(SourceState(name=name, cursor=cursor))
    elif state.cursor is None or cursor > state.cursor:
        state.cursor = cursor
    session.flush()


def record_source_outcome(session: Session, name: str, at: datetime, *, error: str | None = None,
                          newest: datetime | None = None) -> None:
    """Note a pull attempt: its time, and either success (with the newest bucket that held
    usage, if any) or the error (one line), and since when it has been failing.

    The last error stays after a later success, so `last_error_at < last_success` reads as
    "failed once, recovered since"."""
    state = session.get(SourceState, name)
    if state is None:
        state = SourceState(name=name)
        session.add(state)
    state.last_attempt = at
    if error is None:
        state.last_success = at
        state.failing_since = None
        if state.last_data_at is None or (newest is not None and newest > state.last_data_at):
            state.last_data_at = newest or at
    else:
        state.last_error = error[:2000]
        state.last_error_at = at
        state.failing_since = state.failing_since or at
    session.flush()


def record_source_note(session: Session, name: str, note: str, at: datetime) -> None:
    """Keep what a pull had to say (broken lines skipped, a lower-bound count) until the next note."""
    state = session.get(SourceState, name)
    if state is None:
        state = SourceState(name=name)
        session.add(state)
    state.last_note = note[:4000]
    state.last_note_at = at
    session.flush()
