"""Pulled usage sources: each kind is a job `pull_<kind>(context, source, now, *, retry)
-> PullResult` that the scheduler, the CLI and tests all call; it opens its own transactions
from `context.sessions` and reads settings and the catalog from the context.

Windows: a pull reads from its cursor minus the source's overlap (the first pull: from
the source's `start`, else the start of the current month in TZ), aligned down to a bucket,
up to `now`. What a pull reads replaces what that source held for the window, page by
page, so a repeated or interrupted-then-retried pull leaves the totals of one clean pull.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from jobs.config.sections import Source
from jobs.config.settings import Settings
from jobs.usage.sources.http import RetryPolicy, SchemaError, SourceClient, SourceError

__all__ = [
    "PullResult", "RetryPolicy", "SchemaError", "SourceClient", "SourceError", "api_root", "client_for",
    "first_window_start", "window_start", "WIDTH_SECONDS",
]

WIDTH_SECONDS = {"1h": 3600, "1d": 86400}


@dataclass(frozen=True)
class PullResult:
    """What one pull of one source read and wrote."""

    source: str
    since: datetime
    until: datetime
    pages: int
    rows: int
    newest: datetime | None = None  # start of the newest bucket that held any usage
    notes: tuple[str, ...] = ()  # what the operator should know (kept in source_state.last_note)


def align_down(moment: datetime, width: str) -> datetime:
    """The start of the UTC bucket of `width` that holds `moment`."""
    seconds = WIDTH_SECONDS[width]
    ts = int(moment.timestamp())
    return datetime.fromtimestamp(ts - ts % seconds, timezone.utc)


def utc_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), timezone.utc)


def first_window_start(source: Source, settings: Settings, now: datetime) -> datetime:
    """Where a source's very first pull begins: its `start`, else this month's start in TZ."""
    if source.start is not None:
        return utc_midnight(source.start)
    local = now.astimezone(settings.zone)
    month_start = datetime.combine(local.date().replace(day=1), time(0), settings.zone)
    return month_start.astimezone(timezone.utc)


def window_start(cursor: datetime | None, source: Source, settings: Settings, now: datetime) -> datetime:
    """Where the next pull begins: the cursor less the overlap, aligned down to a bucket."""
    start = first_window_start(source, settings, now) if cursor is None else cursor - timedelta(hours=source.overlap_hours)
    return align_down(min(start, now), source.bucket_width)


def api_root(base_url: str) -> str:
    """A provider's origin, whether configured as `https://host` or `https://host/v1`."""
    return base_url.rstrip("/").removesuffix("/v1")


def client_for(source: Source, bearer: str | None, retry: RetryPolicy | None) -> SourceClient:
    """An HTTP client with the source's timeout and the retry policy."""
    return SourceClient(timeout=source.timeout_seconds, bearer=bearer, retry=retry)
