"""together.ai dedicated endpoints as spend: uptime priced at the hardware's cents per minute.

`GET /v1/endpoints?type=dedicated` lists the account's endpoints and their state;
`GET /v1/endpoints/{id}` names an endpoint's hardware and replicas; `GET /v1/hardware`
prices each configuration (`pricing.cents_per_minute`). An endpoint is billed whatever its
traffic, so one left running is a budget leak: this source makes it visible as usage of
mode "dedicated", tagged `endpoint=NAME,hardware=ID`, with `uptime_minutes` (replica-minutes)
and cost. Minutes are counted per observation (`jobs.usage.sources.uptime`).

Replicas: each one running is billed. The spec's `DedicatedEndpoint` states only the
autoscaling bounds (`min_replicas`, `max_replicas`), no current count; the only current count
the spec defines anywhere is `ready_replicas` (container deployments). So an endpoint that
reports `ready_replicas` (at the top level or in `autoscaling`) is counted at that, zero
included; one that does not is counted at `min_replicas`, and when `max_replicas` is higher
the pull says that figure is a lower bound. Hardware the API does not price leaves the
minutes unpriced.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from db.engine import transaction
from db.ledger import BucketRow, add_buckets
from db.models import to_nanos
from db.prices import price_row_id
from db.source_state import record_source_cursor
from jobs.config.context import Context
from jobs.config.sections import Source
from jobs.usage.sources import PullResult, RetryPolicy, SchemaError, api_root, client_for
from jobs.usage.sources.together import parse_time, tag_value, together_key
from jobs.usage.sources.uptime import counted_since, locked_cursor, minutes_by_hour, whole_minute
from jobs.usage.validation import storable

BILLED_STATES = frozenset({"STARTING", "STARTED", "STOPPING"})
"""States in which an endpoint holds its hardware (PENDING waits for it; STOPPED and ERROR do not)."""
MAX_DOLLARS_PER_MINUTE = Decimal(10_000)  # more is not a price any GPU has; it would overflow a bucket


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
    replicas_reported: bool = True  # False: `replicas` is min_replicas, the API said no current count
    max_replicas: int | None = None

    @property
    def lower_bound(self) -> bool:
        """Whether the replicas counted may be fewer than those running (and billed)."""
        return not self.replicas_reported and self.max_replicas is not None and self.max_replicas > self.replicas


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
            per_minute = Decimal(str(cents)) / 100
            if not per_minute.is_finite() or not 0 <= per_minute <= MAX_DOLLARS_PER_MINUTE:
                raise TypeError
            prices[str(item["id"])] = per_minute
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
        parse_time(item.get("created_at"))
    return payload["data"]


def parse_endpoint(payload: Any) -> dict[str, Any]:
    """One `DedicatedEndpoint`: we need its hardware and autoscaling."""
    if not isinstance(payload, dict) or not isinstance(payload.get("hardware"), str):
        raise SchemaError("the endpoint names no hardware")
    return payload


def _count(value: Any) -> int | None:
    return value if type(value) is int and value >= 0 else None


def replicas(detail: dict[str, Any]) -> tuple[int, bool, int | None]:
    """(replicas to bill, whether the API reported them running, max_replicas) of a `DedicatedEndpoint`."""
    scaling = detail.get("autoscaling") if isinstance(detail.get("autoscaling"), dict) else {}
    running = _count(detail.get("ready_replicas"))
    if running is None:
        running = _count(scaling.get("ready_replicas"))
    maximum = _count(scaling.get("max_replicas"))
    if running is not None:
        return running, True, maximum
    minimum = _count(scaling.get("min_replicas"))
    return (minimum if minimum else 1), False, maximum


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
            count, reported, maximum = replicas(detail)
            running.append(
                Endpoint(
                    id=item["id"],
                    name=str(item.get("name") or item["id"]),
                    model=item["model"],
                    state=item["state"],
                    created_at=parse_time(item["created_at"]),
                    hardware=detail.get("hardware"),
                    replicas=count,
                    replicas_reported=reported,
                    max_replicas=maximum,
                )
            )
    return running, hardware


def uptime_rows(endpoint: Endpoint, since: datetime, until: datetime, per_minute: Decimal | None) -> list[BucketRow]:
    """Hour buckets of the endpoint's billed replica-minutes in [since, until), both whole minutes."""
    rows = []
    tags = f"endpoint={tag_value(endpoint.name)},hardware={tag_value(endpoint.hardware or 'unknown')}"
    for hour, minutes in minutes_by_hour(endpoint.created_at, since, until):
        billed = minutes * endpoint.replicas
        if billed == 0:
            continue
        rows.append(
            BucketRow(
                bucket_start=hour,
                width="1h",
                model=storable(endpoint.model, 200),
                mode="dedicated",
                tags=tags[:512],
                uptime_minutes=billed,
                cost_nanos=to_nanos(per_minute * billed) if per_minute is not None else None,
            )
        )
    return rows


def pull_together_endpoints(
    context: Context,
    source: Source,
    now: datetime,
    *,
    retry: RetryPolicy | None = None,
) -> PullResult:
    """Observe the endpoints now and add their running minutes since the last observation."""
    sessions, settings = context.sessions, context.settings
    running, hardware = observe(source, together_key(source, settings), retry)
    observed = whole_minute(now)
    with transaction(sessions) as session:
        previous = locked_cursor(session, source.name)
        since = counted_since(previous, source, observed)
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
        from jobs.usage.endpoints import record_observed  # (imports this module)

        record_observed(session, source.name, running, since, observed)
    notes = tuple(f"endpoint {e.name}: counted at min_replicas={e.replicas}, a lower bound (up to "
                  f"max_replicas={e.max_replicas}; the API reports no running count)" for e in running if e.lower_bound)
    return PullResult(source.name, since, observed, 1, written, notes=notes)
