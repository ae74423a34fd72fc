"""The Slack outbox: messages are written first, then a sender claims, posts and records them.

A message is never lost (it stays until Slack takes it or refuses it for good) and never posted
twice silently: a row is claimed before posting, its `ts` recorded after. A row is marked
uncertain before each post or chart completion and cleared once Slack has answered; a row still
uncertain (its sender died, the request timed out, Slack answered 5xx) is looked for in the
channel's history (our message metadata carries the row's key; a chart, its file) before it is
sent again. To make that history readable the bot joins a public channel before its first post
there; where it still cannot read it, OUTBOX_UNCERTAIN decides: skip (the operator is told) or
repost with a note that it may be a second copy.

Slack's permanent refusals (see `jobs.runtime.slack_errors`) end the row as failed with Slack's reason,
and an operator is told once (`jobs.runtime.operator_notices`); `jobs.runtime.outbox_operator.retry`
sends it again once fixed. Rate limits, 5xx, lost connections and any other failure to send a row
are retried with backoff; a row is never left "sending" by an error. Finding a post after a crash
is `jobs.runtime.outbox_recovery`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import httpx
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError
from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from db.engine import insert_once
from db.models import OutboxMessage
from jobs.config.redaction import redact, redact_values
from jobs.config.settings import Settings
from jobs.runtime import operator_notices
from jobs.runtime.claims import OWNER
from jobs.runtime.operator_notices import NoticeRoute
from jobs.runtime.outbox_operator import fail_row, skip_row
from jobs.runtime.outbox_recovery import Unchecked, chart_shared, find_posted, join
from jobs.runtime.slack_errors import is_permanent

log = logging.getLogger(__name__)
SENDING_LEASE = timedelta(minutes=2)
MAX_BACKOFF = timedelta(minutes=10)
METADATA_EVENT = "budget_guard_message"
MAX_BLOCKS = 50  # Slack's limit per message
FILE_GONE = frozenset({"file_not_found", "file_deleted"})  # an upload that expired before its completion
REPOST_NOTE = ("Sent again: my first attempt got no answer from Slack and I cannot read this channel to check "
               "whether it arrived, so this may be a second copy.")


@dataclass(frozen=True)
class OutboxPolicy:
    """What the operator chose: the safe side for an uncertain row we cannot check, and where notices go."""

    uncertain: Literal["skip", "repost"] = "skip"
    notices: NoticeRoute = NoticeRoute()

    @classmethod
    def from_settings(cls, settings: Settings, publish_home: Callable[[WebClient], int] | None = None) -> "OutboxPolicy":
        """OUTBOX_UNCERTAIN and OPS_CHANNEL; `publish_home` (from the bot) reaches the admins' Home tabs."""
        return cls(uncertain=settings.outbox_uncertain,
                   notices=NoticeRoute(ops_channel=settings.ops_channel, publish_home=publish_home))


@dataclass
class SendReport:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)



def enqueue(session: Session, *, key: str, kind: str, channel: str, text: str,
            blocks: list[dict[str, Any]] | None = None, thread_of: str | None = None,
            attachment: bytes | None = None, attachment_name: str | None = None,
            attachment_alt: str | None = None, late: bool = False, now: datetime | None = None) -> bool:
    """Add a message unless one with this key exists; True if it was added.

    `attachment_name` should be unique to the message: a chart's recovery looks for it."""
    now = now or datetime.now(timezone.utc)
    text, blocks = redact(text), redact_values(blocks)  # nothing posted to Slack carries a secret
    values = dict(dedupe_key=key, kind=kind, channel=channel, text=text, blocks=blocks, thread_of=thread_of,
                  attachment=attachment, attachment_name=attachment_name, attachment_alt=attachment_alt,
                  late=late, status="pending", attempts=0, next_attempt_at=now, created_at=now,
                  file_posted=False, uncertain=False)
    return insert_once(session, OutboxMessage, values, unique=["dedupe_key"])


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
                 stopping: Callable[[], bool] = lambda: False, policy: OutboxPolicy = OutboxPolicy()) -> SendReport:
    """Post every due message and record each `ts`; fail what Slack refuses for good (telling an
    operator once), back off on 429, 5xx and timeouts.

    A row another sender claimed more than `lease` ago is taken over (that sender died).
    Once `stopping()` is true no further row is started; `release` hands the rest back."""
    now = now or datetime.now(timezone.utc)
    report = SendReport()
    _send_batch(sessions, client, owner, now, limit, lease, stopping, policy, report)
    if not stopping() and operator_notices.deliver(sessions, client, policy.notices, now=now):
        _send_batch(sessions, client, owner, now, limit, lease, stopping, policy, report)  # the notices just queued
    return report


def _send_batch(sessions: sessionmaker[Session], client: WebClient, owner: str, now: datetime, limit: int,
                lease: timedelta, stopping: Callable[[], bool], policy: OutboxPolicy, report: SendReport) -> None:
    claimed = _claim_batch(sessions, owner, now, limit, lease)
    for n, row_id in enumerate(claimed):
        if stopping():
            break
        try:
            with sessions() as session:
                row = _claimed_row(session, row_id)
                parent_ts = None
                if row.thread_of and row.thread_of != row.dedupe_key:
                    parent = session.scalar(select(OutboxMessage).where(OutboxMessage.dedupe_key == row.thread_of))
                    if parent is not None and parent.ts is None and parent.status not in ("failed", "skipped"):
                        _defer(sessions, row_id, now, timedelta(seconds=5), None, attempt=False)
                        report.deferred += 1
                        continue
                    parent_ts = parent.ts if parent is not None else None
            _send_one(sessions, client, row, parent_ts, now, policy, report)
        except BaseException:
            _hand_back(sessions, owner, claimed[n:])  # not left "sending" until the lease runs out
            raise


def _claimed_row(session: Session, row_id: int) -> OutboxMessage:
    row = session.get(OutboxMessage, row_id)
    if row is None:
        raise LookupError(f"outbox row {row_id} was claimed for sending but no longer exists")
    return row


def _hand_back(sessions: sessionmaker[Session], owner: str, row_ids: list[int]) -> None:
    """Return rows this sender claimed to pending (uncertain ones stay uncertain), as `release` does."""
    try:
        with sessions() as session, session.begin():
            session.execute(update(OutboxMessage)
                            .where(OutboxMessage.id.in_(row_ids), OutboxMessage.claimed_by == owner,
                                   OutboxMessage.status == "sending")
                            .values(status="pending", claimed_by=None))
    except Exception:  # the database is gone too: the lease hands them over instead
        log.exception("outbox: could not hand back %d claimed row(s)", len(row_ids))


def _send_one(sessions: sessionmaker[Session], client: WebClient, row: OutboxMessage, parent_ts: str | None,
              now: datetime, policy: OutboxPolicy, report: SendReport) -> None:
    try:
        _send(sessions, client, row, parent_ts, policy)
    except Unchecked as exc:
        skip_row(sessions, row, str(exc), now)
        report.skipped += 1
        report.errors.append(f"{row.dedupe_key}: not sent again (cannot check {row.channel}: {exc})")
        return
    except SlackApiError as exc:
        response = exc.response
        status = response.status_code if response is not None else 0
        error = response.get("error") if response is not None and isinstance(response.data, dict) else None
        if status == 429:
            wait = timedelta(seconds=_retry_after(response.headers))
            reason = f"rate limited; retrying after {wait.total_seconds():.0f}s"
        elif status < 500 and is_permanent(error):
            told = fail_row(sessions, row, str(error), response.get("needed"), now)
            report.failed += 1
            report.errors.append(told)
            return
        else:
            wait = _backoff(row.attempts)
            reason = f"Slack said {error or status}; retrying"
            if error in FILE_GONE and row.file_id:  # the upload expired: start the chart afresh
                _record(sessions, row.id, file_id=None)
        _retry_later(sessions, row, now, wait, reason, report)
        return
    except (SlackRequestError, OSError, TimeoutError, httpx.HTTPError) as exc:
        _retry_later(sessions, row, now, _backoff(row.attempts), f"Slack unreachable ({type(exc).__name__}); retrying",
                     report)
        return
    except Exception as exc:  # a bug of ours or a client's: this row waits, the others are sent
        _retry_later(sessions, row, now, _backoff(row.attempts), f"sending failed ({type(exc).__name__}); retrying",
                     report, traceback=True)
        return
    with sessions() as session, session.begin():
        session.execute(update(OutboxMessage).where(OutboxMessage.id == row.id)
                        .values(status="sent", posted_at=now, claimed_by=None, last_error=None))
        # A post that went through shows the token works and the channel takes us again.
        operator_notices.resolve(session, ["token", f"channel:{row.channel}"], now=now)
    report.sent += 1


def _retry_later(sessions: sessionmaker[Session], row: OutboxMessage, now: datetime, wait: timedelta, reason: str,
                 report: SendReport, *, traceback: bool = False) -> None:
    """Log why the row waits, defer it by `wait` and count it."""
    log.log(logging.ERROR if traceback else logging.WARNING, "outbox %s (%s): %s", row.dedupe_key, row.kind,
            reason, exc_info=traceback, extra={"outbox_id": row.id})
    _defer(sessions, row.id, now, wait, reason)
    report.deferred += 1
    report.errors.append(reason)


def _send(sessions: sessionmaker[Session], client: WebClient, row: OutboxMessage, parent_ts: str | None,
          policy: OutboxPolicy) -> None:
    """Post the message, then its chart, each unless an earlier attempt got it there."""
    repost = False
    if row.ts is None:
        join(client, row.channel)
        found = None
        if row.uncertain:
            try:
                found = find_posted(client, row)
            except Unchecked:
                if policy.uncertain == "skip":
                    raise
                repost = True
        if found:
            row.ts, row.posted_channel = found, row.channel
        else:
            row.ts, row.posted_channel = _post(sessions, client, row, parent_ts, repost=repost)
        _record(sessions, row.id, ts=row.ts, posted_channel=row.posted_channel, uncertain=False)
        row.uncertain = False
    if row.attachment is not None and not row.file_posted:
        channel = row.posted_channel or row.channel
        shared, repost = False, False
        if row.uncertain and row.file_id:
            try:
                shared = chart_shared(client, row, channel)
            except Unchecked:
                if policy.uncertain == "skip":
                    raise
                repost = True
        if not shared:
            _share_chart(sessions, client, row, channel, note=REPOST_NOTE if repost else None)
        _record(sessions, row.id, file_posted=True, uncertain=False)


def _post(sessions: sessionmaker[Session], client: WebClient, row: OutboxMessage, thread_ts: str | None,
          *, repost: bool) -> tuple[str, str]:
    """chat.postMessage with the row's key in the message metadata, for recovery after a crash."""
    metadata = {"event_type": METADATA_EVENT, "event_payload": {"key": row.dedupe_key}}
    text, blocks = row.text, row.blocks
    if repost:  # never a second copy silently
        text = f"{text}\n_{REPOST_NOTE}_"
        note = {"type": "context", "elements": [{"type": "mrkdwn", "text": f"_{REPOST_NOTE}_"}]}
        blocks = [*blocks[:MAX_BLOCKS - 1], note] if blocks else None
    _record(sessions, row.id, uncertain=True)
    try:
        response = client.chat_postMessage(channel=row.channel, text=text, blocks=blocks, thread_ts=thread_ts,
                                           metadata=metadata, unfurl_links=False, unfurl_media=False)
    except SlackApiError as exc:
        _refused(sessions, row, exc)
        raise
    return response["ts"], response.get("channel") or row.channel


def _share_chart(sessions: sessionmaker[Session], client: WebClient, row: OutboxMessage, channel: str, *,
                 note: str | None = None) -> None:
    """Slack's three upload steps by hand, so that a failed completion completes the same file
    (its id is kept once the bytes are up) rather than uploading a new one."""
    if row.attachment is None:
        raise ValueError(f"outbox row {row.id} has no chart to share")
    name = row.attachment_name or "chart.png"
    if row.file_id is None:
        upload = client.files_getUploadURLExternal(filename=name, length=len(row.attachment),
                                                   alt_txt=row.attachment_alt)
        httpx.post(str(upload["upload_url"]), content=row.attachment, timeout=client.timeout, proxy=client.proxy,
                   verify=client.ssl or True).raise_for_status()
        row.file_id = str(upload["file_id"])
        _record(sessions, row.id, file_id=row.file_id)
    _record(sessions, row.id, uncertain=True)
    try:
        client.files_completeUploadExternal(files=[{"id": row.file_id, "title": name}], channel_id=channel,
                                            initial_comment=f"_{note}_" if note else None)
    except SlackApiError as exc:
        _refused(sessions, row, exc)
        raise


def _refused(sessions: sessionmaker[Session], row: OutboxMessage, exc: SlackApiError) -> None:
    """Slack answered the post itself with an error below 500: nothing was posted."""
    if exc.response is not None and exc.response.status_code < 500:
        _record(sessions, row.id, uncertain=False)
        row.uncertain = False



def _retry_after(headers: Any) -> float:
    """Seconds Slack asked us to wait (Retry-After, any case; 1 if absent or unreadable)."""
    for name, value in (headers or {}).items():
        if name.lower() == "retry-after":
            try:
                return max(0.0, float(value[0] if isinstance(value, list) else value))
            except (TypeError, ValueError):
                return 1.0
    return 1.0


def _record(sessions: sessionmaker[Session], row_id: int, **values: Any) -> None:
    with sessions() as session, session.begin():
        session.execute(update(OutboxMessage).where(OutboxMessage.id == row_id).values(**values))


def _defer(sessions: sessionmaker[Session], row_id: int, now: datetime, wait: timedelta, reason: str | None,
           *, attempt: bool = True) -> None:
    """Hand the row back for a later attempt (it stays uncertain if a post of it may have landed)."""
    with sessions() as session, session.begin():
        row = _claimed_row(session, row_id)
        if row.status == "sending":
            row.status = "pending"
        row.claimed_by = None
        row.next_attempt_at = now + wait
        if attempt:
            row.attempts += 1
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
