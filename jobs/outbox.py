"""The Slack outbox: messages are written first, then a sender claims, posts and records them.

A message is never lost (it stays until Slack takes it) and never posted twice: a row is
claimed before posting, its `ts` recorded after. A row is marked uncertain before each post
or chart upload and cleared once Slack has answered; a row still uncertain (its sender died,
the request timed out, Slack answered 5xx) is looked for in the channel's history (our
message metadata carries the row's key; a chart, its file name) before it is sent again."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError
from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from db.models import OutboxMessage
from jobs.claims import OWNER

log = logging.getLogger(__name__)
SENDING_LEASE = timedelta(minutes=2)
MAX_BACKOFF = timedelta(minutes=10)
METADATA_EVENT = "budget_guard_message"
# Errors that no retry will fix soon but that must not lose the message either.
OPERATOR_ERRORS = {"not_in_channel", "channel_not_found", "is_archived", "invalid_auth", "token_revoked",
                   "account_inactive", "not_authed", "missing_scope", "restricted_action"}


@dataclass
class SendReport:
    sent: int = 0
    deferred: int = 0
    errors: list[str] = field(default_factory=list)


def enqueue(session: Session, *, key: str, kind: str, channel: str, text: str,
            blocks: list[dict[str, Any]] | None = None, thread_of: str | None = None,
            attachment: bytes | None = None, attachment_name: str | None = None,
            attachment_alt: str | None = None, late: bool = False, now: datetime | None = None) -> bool:
    """Add a message unless one with this key exists; True if it was added.

    `attachment_name` should be unique to the message: a chart's recovery looks for it."""
    now = now or datetime.now(timezone.utc)
    values = dict(dedupe_key=key, kind=kind, channel=channel, text=text, blocks=blocks, thread_of=thread_of,
                  attachment=attachment, attachment_name=attachment_name, attachment_alt=attachment_alt,
                  late=late, status="pending", attempts=0, next_attempt_at=now, created_at=now,
                  file_posted=False, uncertain=False)
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(OutboxMessage).values(**values).on_conflict_do_nothing(index_elements=["dedupe_key"])
    return session.execute(statement.returning(OutboxMessage.id)).scalar() is not None


def _due(now: datetime, lease: timedelta):  # type: ignore[no-untyped-def]
    return or_(
        and_(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now),
        and_(OutboxMessage.status == "sending", OutboxMessage.claimed_at < now - lease),
    )


def _claim_batch(sessions: sessionmaker[Session], owner: str, now: datetime, limit: int,
                 lease: timedelta) -> list[int]:
    """Claim due rows one by one with a conditional update, so two senders never share a row;
    a row "sending" under a sender whose lease ran out is taken over, and marked uncertain."""
    with sessions() as session:
        candidates = session.execute(
            select(OutboxMessage.id, OutboxMessage.status).where(_due(now, lease)).order_by(OutboxMessage.id).limit(limit)
        ).all()
    claimed = []
    for row_id, previous in candidates:
        with sessions() as session, session.begin():
            result = session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == row_id, OutboxMessage.status == previous, _due(now, lease))
                .values(status="sending", claimed_by=owner, claimed_at=now,
                        **({"uncertain": True} if previous == "sending" else {}))
            )
        if result.rowcount == 1:
            claimed.append(row_id)
    return claimed


def send_pending(sessions: sessionmaker[Session], client: WebClient, *, owner: str = OWNER,
                 now: datetime | None = None, limit: int = 50, lease: timedelta = SENDING_LEASE,
                 stopping: Callable[[], bool] = lambda: False) -> SendReport:
    """Post every due message; record each `ts`; back off on 429, 5xx and timeouts.

    A row another sender claimed more than `lease` ago is taken over (that sender died).
    Once `stopping()` is true no further row is started; `release` hands the rest back."""
    now = now or datetime.now(timezone.utc)
    report = SendReport()
    for row_id in _claim_batch(sessions, owner, now, limit, lease):
        if stopping():
            break
        with sessions() as session:
            row = session.get(OutboxMessage, row_id)
            assert row is not None
            parent_ts = None
            if row.thread_of and row.thread_of != row.dedupe_key:
                parent = session.scalar(select(OutboxMessage).where(OutboxMessage.dedupe_key == row.thread_of))
                if parent is not None and parent.ts is None:
                    _defer(sessions, row_id, now, timedelta(seconds=5), None, attempt=False)
                    report.deferred += 1
                    continue
                parent_ts = parent.ts if parent is not None else None
        try:
            _send(sessions, client, row, parent_ts)
            _record(sessions, row_id, status="sent", posted_at=now, claimed_by=None, last_error=None)
            report.sent += 1
        except SlackApiError as exc:
            response = exc.response
            status = response.status_code if response is not None else 0
            error = response.get("error") if response is not None and isinstance(response.data, dict) else None
            if status == 429:
                wait = timedelta(seconds=_retry_after(response.headers))
                reason = f"rate limited; retrying after {wait.total_seconds():.0f}s"
            else:
                wait = _backoff(row.attempts)
                reason = f"Slack said {error or status}"
                if error in OPERATOR_ERRORS:
                    reason += f" for channel {row.channel}; the message stays in the outbox until this is fixed"
            log.warning("outbox %s (%s): %s", row.dedupe_key, row.kind, reason, extra={"outbox_id": row_id})
            # Slack answered: nothing was posted, unless a 5xx came from behind a post that landed.
            _defer(sessions, row_id, now, wait, reason, uncertain=status >= 500)
            report.deferred += 1
            report.errors.append(reason)
        except (SlackRequestError, OSError, TimeoutError) as exc:
            reason = f"Slack unreachable ({type(exc).__name__})"
            log.warning("outbox %s: %s", row.dedupe_key, reason, extra={"outbox_id": row_id})
            _defer(sessions, row_id, now, _backoff(row.attempts), reason)
            report.deferred += 1
            report.errors.append(reason)
    return report


def _send(sessions: sessionmaker[Session], client: WebClient, row: OutboxMessage, parent_ts: str | None) -> None:
    """Post the message, then its chart, each unless an earlier attempt got it there."""
    if row.ts is None:
        found = _find_posted(client, row) if row.uncertain else None
        if found:
            row.ts, row.posted_channel = found, row.channel
        else:
            _record(sessions, row.id, uncertain=True)
            row.ts, row.posted_channel = _post(client, row, parent_ts)
        _record(sessions, row.id, ts=row.ts, posted_channel=row.posted_channel, uncertain=False)
        row.uncertain = False
    if row.attachment is not None and not row.file_posted:
        channel = row.posted_channel or row.channel
        if not (row.uncertain and _chart_shared(client, row, channel)):
            _record(sessions, row.id, uncertain=True)
            client.files_upload_v2(channel=channel, file=row.attachment, filename=row.attachment_name or "chart.png",
                                   title=row.attachment_name or "chart", alt_txt=row.attachment_alt)
        _record(sessions, row.id, file_posted=True, uncertain=False)


def _retry_after(headers: Any) -> float:
    """Seconds Slack asked us to wait (Retry-After, any case; 1 if absent or unreadable)."""
    for name, value in (headers or {}).items():
        if name.lower() == "retry-after":
            try:
                return max(0.0, float(value[0] if isinstance(value, list) else value))
            except (TypeError, ValueError):
                return 1.0
    return 1.0


def _post(client: WebClient, row: OutboxMessage, thread_ts: str | None) -> tuple[str, str]:
    """chat.postMessage with the row's key in the message metadata, for recovery after a crash."""
    metadata = {"event_type": METADATA_EVENT, "event_payload": {"key": row.dedupe_key}}
    response = client.chat_postMessage(channel=row.channel, text=row.text, blocks=row.blocks, thread_ts=thread_ts,
                                       metadata=metadata, unfurl_links=False, unfurl_media=False)
    return response["ts"], response.get("channel") or row.channel


def _history(client: WebClient, channel: str, row: OutboxMessage) -> list[dict[str, Any]] | None:
    """The channel's messages since the row was written; None if Slack refuses to show them."""
    oldest = (row.created_at - timedelta(minutes=1)).timestamp()
    try:
        history = client.conversations_history(channel=channel, oldest=f"{oldest:.6f}",
                                               include_all_metadata=True, limit=200)
    except SlackApiError as exc:
        log.warning("cannot check history of %s before sending %s again (%s); sending again",
                    channel, row.dedupe_key, exc.response.get("error") if exc.response is not None else exc)
        return None
    return list(history.get("messages", []))


def _find_posted(client: WebClient, row: OutboxMessage) -> str | None:
    """The ts of a message carrying this row's key in the channel's recent history, if any."""
    for message in _history(client, row.channel, row) or []:
        payload = (message.get("metadata") or {}).get("event_payload") or {}
        if payload.get("key") == row.dedupe_key:
            return str(message["ts"])
    return None


def _chart_shared(client: WebClient, row: OutboxMessage, channel: str) -> bool:
    """Whether a file with the row's attachment name was shared in the channel since the row was written."""
    name = row.attachment_name or "chart.png"
    return any(f.get("name") == name for m in _history(client, channel, row) or [] for f in m.get("files") or [])


def _record(sessions: sessionmaker[Session], row_id: int, **values: Any) -> None:
    with sessions() as session, session.begin():
        session.execute(update(OutboxMessage).where(OutboxMessage.id == row_id).values(**values))


def _defer(sessions: sessionmaker[Session], row_id: int, now: datetime, wait: timedelta, reason: str | None,
           *, attempt: bool = True, uncertain: bool | None = None) -> None:
    """Hand the row back for a later attempt; `uncertain` False: Slack said no, nothing was sent."""
    with sessions() as session, session.begin():
        row = session.get(OutboxMessage, row_id)
        assert row is not None
        if row.status == "sending":
            row.status = "pending"
        row.claimed_by = None
        row.next_attempt_at = now + wait
        if attempt:
            row.attempts += 1
        if uncertain is not None:
            row.uncertain = row.uncertain and uncertain
        if reason:
            row.last_error = reason


def _backoff(attempts: int) -> timedelta:
    return min(timedelta(seconds=5 * 2 ** min(attempts, 12)), MAX_BACKOFF)


def release(sessions: sessionmaker[Session], *, owner: str = OWNER) -> int:
    """On shutdown: hand back the rows we still hold, to be sent (or, where a post was under
    way, looked for first: they stay uncertain) by whichever sender runs next."""
    with sessions() as session, session.begin():
        result = session.execute(
            update(OutboxMessage).where(OutboxMessage.claimed_by == owner, OutboxMessage.status == "sending")
            .values(status="pending", claimed_by=None)
        )
        return result.rowcount


def pending_count(session: Session) -> int:
    from sqlalchemy import func

    return session.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status != "sent")) or 0
