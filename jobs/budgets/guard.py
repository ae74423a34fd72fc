"""Guard actions: stop a together.ai dedicated endpoint, once, and say what happened.

A stop is claimed in `job_claims` ("stop-endpoint", its key) before together.ai is called, so two
replicas, two clicks or a replayed button send `PATCH /v1/endpoints/{id}` `{"state": "STOPPED"}`
at most once per key while it runs and never again once it worked. A refused, failed or
unanswered call is recorded as failed with its reason, and nothing retries it on its own: a
person may press the button again once they have looked (an unanswered PATCH may have worked).

Keys: `alert:ID` for the Stop button of idle alert ID; `budget:ID:ENDPOINT` for the stops of a
budget whose 100% alert is ID (`on_exceed = "stop-endpoints"`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal
from urllib.parse import quote

import httpx
from sqlalchemy import select

from db.models import Alert, DedicatedEndpoint, JobClaim
from jobs.config.context import Context
from jobs.runtime import claims
from jobs.usage.endpoints import EndpointInfo, get, info
from jobs.usage.sources import SourceError, api_root
from jobs.usage.sources.http import provider_reason
from jobs.usage.sources.together import together_key

log = logging.getLogger(__name__)
STOP_JOB = "stop-endpoint"
Status = Literal["stopped", "already", "busy", "failed", "refused"]


@dataclass(frozen=True)
class StopOutcome:
    """What came of a stop: done now, done before, under way, failed (and why), or refused."""

    status: Status
    reason: str  # one sentence for people
    endpoint: EndpointInfo | None = None
    state: str | None = None  # the endpoint's state as together.ai answered
    by: str | None = None
    at: datetime | None = None


class StopFailed(Exception):
    """together.ai did not stop the endpoint; the message says why in one line, without secrets."""


def idle_alert_key(endpoint_id: str) -> str:
    """The `budget` column of an endpoint's idle alerts (at most 64 characters)."""
    return f"idle:{endpoint_id}"[:64]


def request_stop(base_url: str, api_key: str, endpoint_id: str, *, timeout: float,
                 transport: httpx.BaseTransport | None = None) -> str:
    """`PATCH /v1/endpoints/{id}` with `{"state": "STOPPED"}`, once; the state together.ai answers."""
    url = f"{api_root(base_url)}/v1/endpoints/{quote(endpoint_id, safe='')}"
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json",
               "Accept": "application/json", "User-Agent": "budget-guard"}
    try:
        with httpx.Client(timeout=httpx.Timeout(timeout), transport=transport) as client:
            response = client.patch(url, json={"state": "STOPPED"}, headers=headers)
    except httpx.TimeoutException:
        raise StopFailed(f"together.ai did not answer within {timeout:g} s; the endpoint may or may not be "
                         "stopping, so check it in together.ai before trying again") from None
    except httpx.TransportError as exc:
        raise StopFailed(f"could not reach together.ai ({type(exc).__name__}); nothing was changed") from None
    if response.status_code != 200:
        raise StopFailed(f"together.ai refused: HTTP {response.status_code}{_detail(response)}")
    try:
        state = response.json().get("state")
    except (ValueError, AttributeError):
        state = None
    return state if isinstance(state, str) and state else "STOPPING"


def _detail(response: httpx.Response) -> str:
    """together.ai's reason, short and redacted, as every source's error says it."""
    return provider_reason(response.content)


def _credentials(context: Context, source_name: str) -> tuple[str, str | None, float]:
    """The base URL, key and timeout of the source that saw the endpoint (TOGETHER_API_KEY if it names none)."""
    settings = context.settings
    source = next((s for s in settings.sources if s.name == source_name), None)
    if source is None:  # the source is gone from the configuration: the account's key and API
        key = settings.together_api_key.get_secret_value() if settings.together_api_key else None
        return settings.together_api_url, key, 20.0
    try:
        return source.base_url, together_key(source, settings), source.timeout_seconds
    except SourceError:  # neither its api_key_env nor TOGETHER_API_KEY is set
        return source.base_url, None, source.timeout_seconds


def _previous(context: Context, key: str) -> JobClaim | None:
    with context.sessions() as session:
        return session.scalar(select(JobClaim).where(JobClaim.job == STOP_JOB, JobClaim.period == key))


def stop_endpoint(context: Context, endpoint_id: str, *, key: str, by: str, now: datetime | None = None,
                  transport: httpx.BaseTransport | None = None) -> StopOutcome:
    """Stop the endpoint under the claim `key`: at most one PATCH while it runs or after it worked."""
    now = now or datetime.now(timezone.utc)
    with context.sessions() as session:
        endpoint = get(session, endpoint_id)
    if endpoint is None:
        return StopOutcome("refused", "I have not seen that endpoint; nothing was changed.")
    if not endpoint.running:
        return _already(endpoint)
    if not claims.claim(context.sessions, STOP_JOB, key, now=now):
        previous = _previous(context, key)
        if previous is not None and previous.status == "done":
            return _already(endpoint)
        return StopOutcome("busy", "a stop of this endpoint is already under way; nothing more was sent.", endpoint)
    base, api_key, timeout = _credentials(context, endpoint.source)
    try:
        if not api_key:
            raise StopFailed("no together.ai key is set (TOGETHER_API_KEY or the source's api_key_env); "
                             "nothing was sent")
        state = request_stop(base, api_key, endpoint.id, timeout=timeout, transport=transport)
    except StopFailed as exc:
        claims.finish(context.sessions, STOP_JOB, key, error=str(exc)[:2000])
        log.warning("stopping endpoint %s failed: %s", endpoint.id, exc)
        return StopOutcome("failed", str(exc), endpoint)
    with context.sessions() as session, session.begin():
        row = session.get(DedicatedEndpoint, endpoint.id)
        if row is not None:
            row.state, row.up_since, row.stopped_by, row.stopped_at = state[:16], None, by[:128], now
            endpoint = info(row)
    claims.finish(context.sessions, STOP_JOB, key)
    log.info("endpoint %s stopped by %s (together.ai: %s)", endpoint.id, by, state)
    return StopOutcome("stopped", f"together.ai says {state}.", endpoint, state, by, now)


def _already(endpoint: EndpointInfo) -> StopOutcome:
    if endpoint.stopped_at is not None:
        return StopOutcome("already", "it was already stopped; nothing more was sent.", endpoint, endpoint.state,
                           endpoint.stopped_by, endpoint.stopped_at)
    return StopOutcome("already", f"together.ai no longer shows it running ({endpoint.state}); nothing was sent.",
                       endpoint, endpoint.state)


def stop_from_alert(context: Context, alert_id: int, endpoint_id: str, *, user: str,
                    now: datetime | None = None, transport: httpx.BaseTransport | None = None) -> StopOutcome:
    """The Stop button of an idle alert: it must be that endpoint's idle alert (else refused)."""
    with context.sessions() as session:
        alert = session.get(Alert, alert_id)
        if alert is None or alert.kind != "idle" or alert.budget != idle_alert_key(endpoint_id):
            return StopOutcome("refused", "that button does not belong to an idle alert of that endpoint; "
                                          "nothing was changed.")
    return stop_endpoint(context, endpoint_id, key=f"alert:{alert_id}", by=user, now=now, transport=transport)


def budget_stop_key(alert_id: int, endpoint_id: str) -> str:
    return f"budget:{alert_id}:{endpoint_id}"[:64]
