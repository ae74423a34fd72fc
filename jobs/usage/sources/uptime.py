"""Billed uptime from observations, for what together.ai bills by the minute while it runs
(dedicated endpoints, GPU clusters).

The APIs show state now, not history, so each pull is an observation: something seen running
is counted as running since the previous observation (the source's cursor), at most the
source's `overlap_hours` back, and never before it started. The first pull starts counting
then (or at the source's `start`, if set). The caller adds the minutes and moves the cursor in
one transaction, with the cursor row locked, so a repeated, retried or concurrent pull never
counts a minute twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import SourceState
from jobs.config.sections import Source
from jobs.usage.sources import utc_midnight

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)


def whole_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def locked_cursor(session: Session, name: str) -> datetime | None:
    """The source's cursor, with its row locked until commit (PostgreSQL; SQLite serializes writers)."""
    if session.get(SourceState, name) is None:
        session.add(SourceState(name=name))
        session.flush()
    return session.scalar(select(SourceState.cursor).where(SourceState.name == name).with_for_update())


def counted_since(previous: datetime | None, source: Source, observed: datetime) -> datetime:
    """Where this observation's counting begins: the previous one, at most the overlap back."""
    if previous is None:
        return min(utc_midnight(source.start), observed) if source.start else observed
    return max(previous, observed - timedelta(hours=source.overlap_hours))


def minutes_by_hour(started_at: datetime | None, since: datetime, until: datetime) -> list[tuple[datetime, int]]:
    """(hour start, whole minutes) running in [since, until), not before `started_at` (a part
    minute there is not counted); `since` and `until` are whole minutes."""
    start = since
    if started_at is not None:
        start = max(since, whole_minute(started_at) + (MINUTE if started_at.second or started_at.microsecond else
                                                         timedelta(0)))
    spans = []
    hour = start.replace(minute=0)
    while hour < until:
        lo, hi = max(start, hour), min(until, hour + HOUR)
        minutes = int((hi - lo).total_seconds()) // 60
        if minutes > 0:
            spans.append((hour, minutes))
        hour += HOUR
    return spans
