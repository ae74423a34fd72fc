"""together.ai dedicated endpoints as spend: uptime priced at the hardware's cents per minute.

`GET /v1/endpoints?type=dedicated` lists the account's endpoints and their state;
`GET /v1/endpoints/{id}` names an endpoint's hardware and replicas; `GET /v1/hardware`
prices each configuration (`pricing.cents_per_minute`). An endpoint is billed whatever its
traffic, so one left running is a budget leak: this source makes it visible as usage of
mode "dedicated", tagged `endpoint=NAME,hardware=ID`, with `uptime_minutes` and cost.

The API shows state now, not history, so each pull is an observation: an endpoint seen
running is counted as running since the previous observation (the cursor), at most
`overlap_hours` back, and never before it was created. The first pull starts counting
then (or at the source's `start`, if set). Minutes are added and the cursor moved in one
transaction, with the cursor row locked, so a repeated, retried or concurrent pull never
counts a minute twice. Replicas: `autoscaling.min_replicas`, a lower bound when
autoscaling adds more. Hardware the API does not price leaves the minutes unpriced.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.engine import transaction
from db.ledger import BucketRow, add_buckets, price_row_id, record_source_cursor
from db.models import SourceState, to_nanos
from jobs.settings import Settings, Source
from jobs.sources import PullResult, RetryPolicy, SchemaError, SourceError, api_root, client_for, utc_midnight
from pricing.catalog import Catalog

BILLED_STATES = frozenset({"STARTING", "STARTED", "STOPPING"})
"""States in which an endpoint holds its hardware (PENDING waits for it; STOPPED and ERROR do not)."""
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Endpoint:
    """A dedicated endpoint as observed now."""

    id: str
    name: str
    model: str
    state: str
    created_at: datetime
    hardware: str | None = None
    replicas: int = 1


def _parse_time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise SchemaError("created_at is not a date-time")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise SchemaError(f"created_at {value!r} is not ISO 8601") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def parse_hardware(payload: Any) -> dict[str, Decimal]:
    """Hardware id → dollars per minute, from `/v1/hardware`."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        raise SchemaError("expected a list object with data")
    prices = {}
    for item in payload["data"]:
        try:
            cents = item["pricing"]["cents_per_minute"]
            if isinstance(cents, bool) or not isinstance(cents, (int, float, str)):
                raise TypeError
            prices[str(item["id"])] = Decimal(str(cents)) / 100
        except (KeyError, TypeError, InvalidOperation):
            raise SchemaError("a hardware item lacks id or pricing.cents_per_minute") from None
    return prices


def parse_endpoints(payload: Any) -> list[dict[str, Any]]:
    """The listed endpoints (`ListEndpoint`), checked for the fields we read."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        raise SchemaError("expected a list object with data")
    for item in payload["data"]:
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in ("id", "model", "state", "type")):
            raise SchemaError("an endpoint lacks id, model, type or state")
        _parse_time(item.get("created_at"))
    return payload["data"]


def parse_endpoint(payload: Any) -> dict[str, Any]:
    """One `DedicatedEndpoint`: we need its hardware and autoscaling."""
    if not isinstance(payload, dict) or not isinstance(payload.get("hardware"), str):
        raise SchemaError("the endpoint names no hardware")
    return payload


def _replicas(detail: dict[str, Any]) -> int:
    scaling = detail.get("autoscaling")
    minimum = scaling.get("min_replicas") if isinstance(scaling, dict) else None
    return minimum if type(minimum) is int and minimum > 0 else 1


def observe(source: Source, key: str | None, retry: RetryPolicy | None) -> tuple[list[Endpoint], dict[str, Decimal]]:
    """The account's dedicated endpoints that are running now, and hardware prices."""
    root = api_root(source.base_url)
    with client_for(source, key, retry) as client:
        hardware = client.get_json(f"{root}/v1/hardware", None, parse_hardware)
        listed = client.get_json(f"{root}/v1/endpoints", {"type": "dedicated"}, parse_endpoints)
        running = []
        for item in listed:
            if item["type"] != "dedicated" or item["state"] not in BILLED_STATES:
                continue
            detail = item if isinstance(item.get("hardware"), str) else client.get_json(
                f"{root}/v1/endpoints/{item['id']}", None, parse_endpoint
            )
            running.append(
                Endpoint(
                    id=item["id"],
                    name=str(item.get("name") or item["id"]),
                    model=item["model"],
                    state=item["state"],
                    created_at=_parse_time(item["created_at"]),
                    hardware=detail.get("hardware"),
                    replicas=_replicas(detail),
                )
            )
    return running, hardware


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def _tag(value: str) -> str:
    return value.replace(",", "_").replace("=", "_")


def uptime_rows(endpoint: Endpoint, since: datetime, until: datetime, per_minute: Decimal | None) -> list[BucketRow]:
    """Hour buckets of the endpoint's billed minutes in [since, until), both whole minutes."""
    start = max(since, _minute(endpoint.created_at) + (MINUTE if endpoint.created_at.second else timedelta(0)))
    rows = []
    hour = start.replace(minute=0)
    while hour < until:
        lo, hi = max(start, hour), min(until, hour + HOUR)
        minutes = int((hi - lo).total_seconds()) // 60
        if minutes > 0:
            billed = minutes * endpoint.replicas
            tags = f"endpoint={_tag(endpoint.name)},hardware={_tag(endpoint.hardware or 'unknown')}"
            rows.append(
                BucketRow(
                    bucket_start=hour,
                    width="1h",
                    model=endpoint.model[:200],
                    mode="dedicated",
                    tags=tags[:512],
                    uptime_minutes=billed,
                    cost_nanos=to_nanos(per_minute * billed) if per_minute is not None else None,
                )
            )
        hour += HOUR
    return rows


def _locked_cursor(session: Session, name: str) -> datetime | None:
    """The source's cursor, with its row locked until commit (PostgreSQL; SQLite serializes writers)."""
    if session.get(SourceState, name) is None:
        session.add(SourceState(name=name))
        session.flush()
    return session.scalar(select(SourceState.cursor).where(SourceState.name == name).with_for_update())


def pull_together_endpoints(
    sessions: sessionmaker[Session],
    settings: Settings,
    source: Source,
    catalog: Catalog,
    now: datetime,
    *,
    retry: RetryPolicy | None = None,
) -> PullResult:
    """Observe the endpoints now and add their running minutes since the last observation."""
    key = source.api_key() or (settings.together_api_key.get_secret_value() if settings.together_api_key else None)
    if not key:
        raise SourceError(f"{source.api_key_env or 'TOGETHER_API_KEY'} is not set")
    running, hardware = observe(source, key, retry)
    observed = _minute(now)
    with transaction(sessions) as session:
        previous = _locked_cursor(session, source.name)
        if previous is None:
            since = min(utc_midnight(source.start), observed) if source.start else observed
        else:
            since = max(previous, observed - timedelta(hours=source.overlap_hours))
        rows: list[BucketRow] = []
        for endpoint in running:
            per_minute = hardware.get(endpoint.hardware or "")
            endpoint_rows = uptime_rows(endpoint, since, observed, per_minute)
            if per_minute is not None and endpoint_rows:
                price_id = price_row_id(
                    session,
                    provider="together",
                    model=endpoint.hardware or "",
                    mode="dedicated",
                    source="provider-api",
                    effective_from=None,
                    input_rate=Decimal(0),
                    cached_rate=Decimal(0),
                    output_rate=Decimal(0),
                    minute_rate=per_minute,
                )
                for row in endpoint_rows:
                    row.price_id = price_id
            rows.extend(endpoint_rows)
        written = add_buckets(session, source.name, rows)
        record_source_cursor(session, source.name, max(observed, previous or observed))
    return PullResult(source.name, since, observed, 1, written)
