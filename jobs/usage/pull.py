"""Pull every configured usage source (or one), each on its own: one source failing is
recorded (last error) and never stops the others."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from db.engine import transaction
from db.source_state import record_source_cursor, record_source_note, record_source_outcome
from jobs.config.context import Context
from jobs.config.redaction import one_line
from jobs.config.sections import Source
from jobs.usage.sources import PullResult, RetryPolicy, SourceError
from jobs.usage.sources.generic_json import pull_generic_json
from jobs.usage.sources.openai_usage import pull_openai_usage
from jobs.usage.sources.together_batches import pull_together_batches
from jobs.usage.sources.together_clusters import pull_together_clusters
from jobs.usage.sources.together_endpoints import pull_together_endpoints
from jobs.usage.sources.together_fine_tunes import pull_together_fine_tunes

log = logging.getLogger("budget_guard.pull")

Puller = Callable[..., PullResult]
PULLERS: dict[str, Puller] = {
    "openai_usage": pull_openai_usage,
    "generic_json": pull_generic_json,
    "together_endpoints": pull_together_endpoints,
    "together_batches": pull_together_batches,
    "together_fine_tunes": pull_together_fine_tunes,
    "together_clusters": pull_together_clusters,
}


@dataclass(frozen=True)
class PullOutcome:
    """One source's pull: its result, or the one-line error it failed with."""

    source: str
    result: PullResult | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class UnknownSource(LookupError):
    """`only` names no configured source."""


def pull_sources(
    context: Context,
    *,
    only: str | None = None,
    now: datetime | None = None,
    retry: RetryPolicy | None = None,
) -> list[PullOutcome]:
    """Pull each configured source (or just `only`), recording success or failure per source."""
    now = now or datetime.now(timezone.utc)
    settings = context.settings
    sources: list[Source] = list(settings.sources)
    if only is not None:
        sources = [s for s in sources if s.name == only]
        if not sources:
            known = ", ".join(s.name for s in settings.sources) or "none configured"
            raise UnknownSource(f"no source named {only!r} (sources: {known})")
    outcomes = []
    for source in sources:
        outcomes.append(pull_one(context, source, now, retry=retry))
    return outcomes


def pull_one(
    context: Context,
    source: Source,
    now: datetime,
    *,
    retry: RetryPolicy | None = None,
    **options: Any,
) -> PullOutcome:
    """Pull one source; on success move its cursor to the window's end, else record the error.

    `options` go to the source kind's pull function (e.g. `page_limit` for openai_usage)."""
    sessions = context.sessions
    try:
        result = PULLERS[source.kind](context, source, now, retry=retry, **options)
    except Exception as exc:  # noqa: BLE001 - a failing source must not stop the others
        error = one_line(str(exc) if isinstance(exc, SourceError) else f"{type(exc).__name__}: {exc}")
        log.warning("pull of %s failed: %s", source.name, error)
        try:
            with transaction(sessions) as session:
                record_source_outcome(session, source.name, now, error=error)
        except Exception:  # noqa: BLE001 - the database itself may be what failed
            log.exception("could not record the failure of %s", source.name)
        return PullOutcome(source.name, error=error)
    with transaction(sessions) as session:
        record_source_cursor(session, source.name, result.until)
        record_source_outcome(session, source.name, now, newest=result.newest)
        if result.notes:
            record_source_note(session, source.name, one_line("; ".join(result.notes), 2000), now)
    log.info("pulled %s: %d page(s), %d bucket row(s)", source.name, result.pages, result.rows)
    for note in result.notes:
        log.warning("pull of %s: %s", source.name, note)
    return PullOutcome(source.name, result=result)
