"""The operator's side of the Slack outbox: a row Slack refused for good, or one skipped because
it may have landed where the bot cannot look, ends with a notice saying what to do; then what
the operator sees (`budget-guard outbox`, `/metrics`): what is still to send, what failed and
why; and sending rows again once what stopped them is fixed, which resolves their open notices
so the same trouble later is told again."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timezone

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from db.models import OutboxMessage
from jobs.runtime import operator_notices
from jobs.runtime.operator_notices import NOTICE_KIND
from jobs.runtime.slack_errors import refusal

log = logging.getLogger(__name__)
UNCHECKED = "unchecked"  # failed_reason of a skipped row: it may have reached a channel we cannot read


def _what(row: OutboxMessage) -> str:
    """The message in a few words, for a notice."""
    if row.kind == NOTICE_KIND:
        return "an operator notice"
    first = (row.text or "").strip().splitlines()[0] if (row.text or "").strip() else ""
    summary = first if len(first) <= 80 else first[:79] + "…"
    return f"the {row.kind} “{summary}”" if summary else f"a {row.kind} message"


def fail_row(sessions: sessionmaker[Session], row: OutboxMessage, error: str, needed: str | None,
             now: datetime) -> str:
    """End the row as failed with Slack's reason and record the operator's notice (once per problem)."""
    told = refusal(error, channel=row.channel, row_id=row.id, what=_what(row), needed=needed)
    text = told.words
    if row.kind == NOTICE_KIND:
        text += f"\n\nThe notice I meant to post there:\n{row.text}"
    with sessions() as session, session.begin():
        session.execute(update(OutboxMessage).where(OutboxMessage.id == row.id)
                        .values(status="failed", failed_reason=error, claimed_by=None, uncertain=False,
                                attempts=OutboxMessage.attempts + 1, last_error=operator_notices.plain(told.words)))
        operator_notices.raise_notice(session, told.problem, text, now=now)
    log.warning("outbox %s (%s) failed for good: %s", row.dedupe_key, row.kind, operator_notices.plain(told.words),
                extra={"outbox_id": row.id, "channel": row.channel})
    return f"Slack said {error}: {operator_notices.plain(told.words)}"


def skip_row(sessions: sessionmaker[Session], row: OutboxMessage, reason: str, now: datetime) -> None:
    """OUTBOX_UNCERTAIN=skip: do not risk a second copy; tell the operator what may be missing."""
    part = "the chart of " if row.ts else ""
    text = (f"I may have missed posting {part}{_what(row)} to <#{row.channel}>: my attempt got no answer from "
            f"Slack, and I cannot read that channel to check whether it arrived (`{reason}`). So as not to post "
            f"it twice, I have not sent it again. If it is not there, run `budget-guard outbox retry {row.id}`; "
            f"to have such messages resent marked as possible repeats, set OUTBOX_UNCERTAIN=repost.")
    with sessions() as session, session.begin():
        session.execute(update(OutboxMessage).where(OutboxMessage.id == row.id)
                        .values(status="skipped", failed_reason=UNCHECKED, claimed_by=None,
                                last_error=operator_notices.plain(text)))
        operator_notices.raise_notice(session, f"unchecked:{row.id}", text, now=now)
    log.warning("outbox %s (%s) skipped: %s", row.dedupe_key, row.kind, operator_notices.plain(text),
                extra={"outbox_id": row.id, "channel": row.channel})


# -- what the operator sees and does (`budget-guard outbox`) ------------------------------------


def pending_count(session: Session) -> int:
    """Messages still to be sent (pending or being sent)."""
    return session.scalar(select(func.count()).select_from(OutboxMessage)
                          .where(OutboxMessage.status.in_(("pending", "sending")))) or 0


def failures_by_reason(session: Session) -> dict[str, int]:
    """Failed rows by Slack's error code, and skipped ones under "unchecked"."""
    rows = session.execute(select(OutboxMessage.failed_reason, func.count())
                           .where(OutboxMessage.status.in_(("failed", "skipped")))
                           .group_by(OutboxMessage.failed_reason)).all()
    return {str(reason or "unknown"): int(n) for reason, n in rows}


def unsent(session: Session) -> list[OutboxMessage]:
    """Every row not sent: pending (uncertain ones too), being sent, failed and skipped, oldest first."""
    return list(session.scalars(select(OutboxMessage).where(OutboxMessage.status != "sent")
                                .order_by(OutboxMessage.id)))


class RetryRefused(Exception):
    """A row that cannot be retried: unknown, or already sent or being sent."""


def retry(session: Session, ids: Iterable[int], *, now: datetime | None = None) -> list[OutboxMessage]:
    """Send these rows again on the sender's next run, after the operator fixed what stopped them.

    A skipped row is sent without looking first (the operator checked it is missing). The rows'
    open notices are resolved, so the same trouble again is told again."""
    now = now or datetime.now(timezone.utc)
    rows = []
    for row_id in ids:
        row = session.get(OutboxMessage, row_id)
        if row is None:
            raise RetryRefused(f"there is no outbox row {row_id}; `budget-guard outbox` lists them")
        if row.status in ("sent", "sending"):
            raise RetryRefused(f"outbox row {row_id} is {'already sent' if row.status == 'sent' else 'being sent'}; "
                               "nothing to retry")
        problems = [f"message:{row.id}", f"unchecked:{row.id}", f"channel:{row.channel}", "token"]
        if row.failed_reason and row.status == "failed":
            problems.append(f"app:{row.failed_reason}")
        operator_notices.resolve(session, problems, now=now)
        if row.status == "skipped":
            row.uncertain = False
        row.status, row.failed_reason, row.attempts, row.next_attempt_at = "pending", None, 0, now
        row.last_error = "retry asked for by the operator"
        rows.append(row)
    return rows


def failed_ids(session: Session) -> list[int]:
    return list(session.scalars(select(OutboxMessage.id).where(OutboxMessage.status.in_(("failed", "skipped")))
                                .order_by(OutboxMessage.id)))
