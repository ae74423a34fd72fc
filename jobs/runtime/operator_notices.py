"""Telling an operator, once, what only they can fix: in OPS_CHANNEL, else on the Home tab of
each admin, else in the log at ERROR.

A notice is recorded for a problem ("token", "channel:C0123", "message:42", ...) unless one for
the same problem is still open, so fifty alerts to a channel the bot was removed from make one
notice, not fifty. A problem is resolved when the operator retries its messages or a later post
shows it fixed; if it comes back after that, it is told again."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from slack_sdk import WebClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from db.engine import insert_once
from db.models import OperatorNotice, OutboxMessage

log = logging.getLogger(__name__)
NOTICE_KIND = "notice"  # the outbox kind of a notice posted to OPS_CHANNEL


@dataclass(frozen=True)
class NoticeRoute:
    """Where notices go. `publish_home(client)` republishes every admin's Home tab (which lists
    the open notices) and returns how many it reached; the bot supplies it."""

    ops_channel: str | None = None
    publish_home: Callable[[WebClient], int] | None = None


def raise_notice(session: Session, problem: str, text: str, *, now: datetime | None = None) -> bool:
    """Record a notice for `problem` unless one is open; True if this call recorded it."""
    now = now or datetime.now(timezone.utc)
    return insert_once(session, OperatorNotice, dict(problem=problem, open_key=problem, text=text, created_at=now),
                       unique=["open_key"])


def resolve(session: Session, problems: Iterable[str], *, now: datetime | None = None) -> int:
    """Close the open notices for `problems`, so the same trouble later is told again."""
    keys = list(problems)
    if not keys:
        return 0
    result = session.execute(update(OperatorNotice).where(OperatorNotice.open_key.in_(keys))
                             .values(open_key=None, resolved_at=now or datetime.now(timezone.utc)))
    return result.rowcount


def open_notices(session: Session) -> list[OperatorNotice]:
    """Notices whose problem is not resolved yet, oldest first."""
    return list(session.scalars(select(OperatorNotice).where(OperatorNotice.open_key.is_not(None))
                                .order_by(OperatorNotice.id)))


def plain(text: str) -> str:
    """A notice as a log line: channel links as their IDs, no mrkdwn code marks."""
    return re.sub(r"<#([A-Z0-9]+)(?:\|[^>]*)?>", r"channel \1", text).replace("`", "")


def deliver(sessions: sessionmaker[Session], client: WebClient | None, route: NoticeRoute, *,
            now: datetime | None = None) -> int:
    """Send each notice not sent yet; return how many were queued for OPS_CHANNEL (the outbox posts those).

    Each notice is claimed before it is sent, so two replicas never tell it twice."""
    now = now or datetime.now(timezone.utc)
    with sessions() as session:
        waiting = session.execute(select(OperatorNotice.id, OperatorNotice.problem)
                                  .where(OperatorNotice.delivered_to.is_(None)).order_by(OperatorNotice.id)).all()
    queued = 0
    for notice_id, problem in waiting:
        destination = _destination(problem, route, client)
        with sessions() as session, session.begin():
            claimed = session.execute(update(OperatorNotice)
                                      .where(OperatorNotice.id == notice_id, OperatorNotice.delivered_to.is_(None))
                                      .values(delivered_to=destination, delivered_at=now)).rowcount == 1
            if not claimed:
                continue
            text = session.get(OperatorNotice, notice_id).text  # type: ignore[union-attr]
            if destination not in ("home", "log"):  # the claim makes this key new
                session.add(OutboxMessage(dedupe_key=f"notice:{notice_id}", kind=NOTICE_KIND, channel=destination,
                                          text=text, status="pending", attempts=0, next_attempt_at=now,
                                          created_at=now, file_posted=False, uncertain=False, late=False))
                queued += 1
        if destination == "home":
            _publish_homes(client, route, text)
        elif destination == "log":
            log.error("operator notice: %s", plain(text))
    return queued


def _destination(problem: str, route: NoticeRoute, client: WebClient | None) -> str:
    if problem == "token" or client is None:  # without a working token nothing reaches Slack
        return "log"
    if route.ops_channel and problem != f"channel:{route.ops_channel}":
        return route.ops_channel
    return "home" if route.publish_home is not None else "log"


def _publish_homes(client: WebClient | None, route: NoticeRoute, text: str) -> None:
    if client is None or route.publish_home is None:
        raise ValueError("a notice for the Home tabs needs a Slack client and the bot's publish_home")
    try:
        reached = route.publish_home(client)
    except Exception as exc:  # noqa: BLE001 - the notice must not be lost with the error
        log.error("operator notice (the admins' Home tabs could not be updated: %s): %s", type(exc).__name__,
                  plain(text))
        return
    if reached == 0:
        log.error("operator notice (no admin to show it to; set OPS_CHANNEL or ADMINS): %s", plain(text))
