"""Exactly-once job runs across replicas: whoever claims (job, period) first runs it.

A claim is a row with a unique (job, period). A run that failed, or whose owner died (its
lease ran out while still "running"), can be claimed again; a finished one never is."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import TypeVar

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db.models import JobClaim
from jobs.config.redaction import redact

log = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_LEASE = timedelta(minutes=15)
OWNER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class AlreadyClaimed(Exception):
    """Another run has (or had) this job and period."""


def claim(sessions: sessionmaker[Session], job: str, period: str, *, owner: str = OWNER,
          now: datetime | None = None, lease: timedelta = DEFAULT_LEASE) -> bool:
    """True if this process now owns (job, period); False if someone else has or had it."""
    now = now or datetime.now(timezone.utc)
    with sessions() as session:
        try:
            with session.begin():
                session.add(JobClaim(job=job, period=period, owner=owner, status="running", claimed_at=now))
            return True
        except IntegrityError:
            pass
    with sessions() as session, session.begin():
        taken = session.execute(
            update(JobClaim)
            .where(
                JobClaim.job == job,
                JobClaim.period == period,
                or_(JobClaim.status == "failed",
                    and_(JobClaim.status == "running", JobClaim.claimed_at < now - lease)),
            )
            .values(owner=owner, status="running", claimed_at=now, finished_at=None, error=None)
        )
        return taken.rowcount == 1


def finish(sessions: sessionmaker[Session], job: str, period: str, *, owner: str = OWNER,
           error: str | None = None, now: datetime | None = None) -> None:
    """Mark our claim done (or failed, so a later tick may retry it)."""
    now = now or datetime.now(timezone.utc)
    with sessions() as session, session.begin():
        session.execute(
            update(JobClaim)
            .where(JobClaim.job == job, JobClaim.period == period, JobClaim.owner == owner)
            .values(status="failed" if error else "done", finished_at=now, error=redact(error) if error else None)
        )


def release_all(sessions: sessionmaker[Session], *, owner: str = OWNER) -> int:
    """On shutdown: give back claims still running, so another replica can take them at once."""
    with sessions() as session, session.begin():
        result = session.execute(
            update(JobClaim).where(JobClaim.owner == owner, JobClaim.status == "running")
            .values(status="failed", error="released at shutdown")
        )
        return result.rowcount


def run_once(sessions: sessionmaker[Session], job: str, period: str, fn: Callable[[], T], *,
             owner: str = OWNER, now: datetime | None = None, lease: timedelta = DEFAULT_LEASE) -> T:
    """Claim (job, period) and run `fn`; raises AlreadyClaimed if another run has it."""
    if not claim(sessions, job, period, owner=owner, now=now, lease=lease):
        raise AlreadyClaimed(f"{job} for {period} is already claimed")
    try:
        result = fn()
    except BaseException as exc:
        finish(sessions, job, period, owner=owner, error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    finish(sessions, job, period, owner=owner)
    return result


def status(session: Session, job: str, period: str) -> str | None:
    """The claim's status, or None if nobody claimed it."""
    return session.scalar(select(JobClaim.status).where(JobClaim.job == job, JobClaim.period == period))
