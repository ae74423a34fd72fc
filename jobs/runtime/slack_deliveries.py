"""Slack deliveries already handled, so a retried event (`X-Slack-Retry-Num`, same `event_id`)
or a replayed interaction is handled once, whichever replica it reaches.

Slack retries an event three times within about five minutes; keys are kept a day."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from db.engine import insert_once
from db.models import SlackDelivery

KEEP = timedelta(days=1)
PRUNE_EVERY = timedelta(minutes=10)
_pruned = {"at": datetime.min.replace(tzinfo=timezone.utc)}
_prune_lock = threading.Lock()


def first_delivery(sessions: sessionmaker[Session], key: str, *, now: datetime | None = None) -> bool:
    """Record `key`; True if no delivery with it was recorded before (handle it), False for a repeat."""
    now = now or datetime.now(timezone.utc)
    with sessions() as session, session.begin():
        first = insert_once(session, SlackDelivery, dict(key=key[:200], received_at=now), unique=["key"])
        with _prune_lock:
            due = now - _pruned["at"] >= PRUNE_EVERY
            if due:
                _pruned["at"] = now
        if due:
            session.execute(delete(SlackDelivery).where(SlackDelivery.received_at < now - KEEP))
    return first
