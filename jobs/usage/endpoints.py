"""The dedicated endpoints together.ai showed us last, and which of them sit idle.

Each pull of a `together_endpoints` source records the endpoints it saw billed: their id (to act
on them), name, model, hardware, and since when they have been up without a break (where the
ledger starts counting their uptime). An endpoint that pull no longer sees billed is marked
NOT_BILLED (stopped, pending, failed or deleted: together.ai no longer charges for it).

An endpoint is idle when it has been up for `IDLE_ENDPOINT_HOURS` with no tokens recorded
against it: usage of mode "dedicated" of its model, usage naming the endpoint itself as the
model (what requests to a dedicated endpoint send), or usage tagged `endpoint=NAME`. What it
has cost while idle is its uptime in the ledger since it went idle, whole hours."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import BigInteger, ColumnElement, and_, cast, func, or_, select
from sqlalchemy.orm import Session

from db.models import DedicatedEndpoint, UsageBucket, from_nanos
from db.rollups import DailyRow
from jobs.config.settings import Settings
from jobs.usage.sources.together import tag_value as endpoint_tag
from jobs.usage.sources.together_endpoints import Endpoint

RUNNING = ("STARTING", "STARTED")  # up and not already stopping: what a stop acts on
NOT_BILLED = "NOT_BILLED"
WIDTHS = {"1h": timedelta(hours=1), "1d": timedelta(days=1)}


@dataclass(frozen=True)
class EndpointInfo:
    """A dedicated endpoint as last seen, detached from any session."""

    id: str
    source: str
    name: str
    model: str
    hardware: str | None
    state: str
    up_since: datetime | None
    stopped_by: str | None = None
    stopped_at: datetime | None = None

    @property
    def running(self) -> bool:
        return self.state in RUNNING and self.up_since is not None

    def as_row(self) -> DailyRow:
        """The endpoint as its uptime rows read to a budget's scope (model, mode, tags)."""
        tags = f"endpoint={endpoint_tag(self.name)},hardware={endpoint_tag(self.hardware or 'unknown')}"
        return DailyRow(date.min, self.model, "dedicated", "", "", "", tags, 0, 0, 0, 0, 0, 0, 0)


def info(row: DedicatedEndpoint) -> EndpointInfo:
    return EndpointInfo(row.id, row.source, row.name, row.model, row.hardware, row.state, row.up_since,
                        row.stopped_by, row.stopped_at)


def record_observed(session: Session, source: str, billed: Iterable[Endpoint], since: datetime,
                    observed: datetime) -> None:
    """Record what one pull saw billed (counted as up from `since`, or from creation if later);
    the source's other endpoints are no longer billed."""
    seen = set()
    for endpoint in billed:
        seen.add(endpoint.id)
        row = session.get(DedicatedEndpoint, endpoint.id)
        if row is None:
            row = DedicatedEndpoint(id=endpoint.id, source=source, stopped_by=None, stopped_at=None)
            session.add(row)
        if row.up_since is None:
            row.up_since = max(since, endpoint.created_at)
        row.source, row.name, row.model = source, endpoint.name[:256], endpoint.model[:200]
        row.hardware, row.state, row.last_seen = endpoint.hardware, endpoint.state[:16], observed
    for row in session.scalars(select(DedicatedEndpoint).where(DedicatedEndpoint.source == source)):
        if row.id not in seen and row.state != NOT_BILLED:
            row.state, row.up_since = NOT_BILLED, None
    session.flush()


def running_endpoints(session: Session, sources: Sequence[str]) -> list[EndpointInfo]:
    """Endpoints of the configured sources that were up and not stopping at their last pull."""
    if not sources:
        return []
    rows = session.scalars(select(DedicatedEndpoint).where(DedicatedEndpoint.source.in_(sources),
                                                           DedicatedEndpoint.state.in_(RUNNING))
                           .order_by(DedicatedEndpoint.name, DedicatedEndpoint.id))
    return [info(row) for row in rows if row.up_since is not None]


def endpoint_sources(settings: Settings) -> list[str]:
    return [s.name for s in settings.sources if s.kind == "together_endpoints"]


def _tagged(tag: str) -> ColumnElement[bool]:
    """Tags (sorted `k=v` joined by commas) that hold `endpoint=TAG` exactly."""
    value = f"endpoint={tag}".replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    tags = UsageBucket.tags
    return or_(tags == f"endpoint={tag}", tags.like(f"{value},%", escape="\\"),
               tags.like(f"%,{value}", escape="\\"), tags.like(f"%,{value},%", escape="\\"))


def _against(endpoint: EndpointInfo) -> ColumnElement[bool]:
    """Usage that counts as the endpoint's traffic."""
    b = UsageBucket
    return or_(and_(b.model == endpoint.model, b.mode == "dedicated"), b.model == endpoint.name,
               _tagged(endpoint_tag(endpoint.name)))


@dataclass(frozen=True)
class IdleEndpoint:
    """An endpoint up with no tokens since `idle_since`, and what that uptime cost."""

    endpoint: EndpointInfo
    idle_since: datetime
    cost: Decimal
    unpriced_minutes: int  # uptime whose hardware has no price, not in `cost`


def last_tokens_at(session: Session, endpoint: EndpointInfo, since: datetime) -> datetime | None:
    """The end of the newest bucket after `since` with tokens against the endpoint."""
    b = UsageBucket
    newest = session.execute(
        select(b.bucket_start, b.width).where(_against(endpoint), b.bucket_start >= since - timedelta(days=1),
                                              b.input_tokens + b.output_tokens > 0)
        .order_by(b.bucket_start.desc()).limit(1)
    ).first()
    return newest[0] + WIDTHS.get(newest[1], timedelta(hours=1)) if newest else None


def uptime_cost(session: Session, endpoint: EndpointInfo, since: datetime) -> tuple[Decimal, int]:
    """The endpoint's uptime cost in the ledger from the hour of `since`, and its unpriced minutes."""
    b = UsageBucket
    nanos, unpriced = session.execute(
        select(cast(func.sum(b.cost_nanos), BigInteger),
               cast(func.sum(b.uptime_minutes).filter(b.cost_nanos.is_(None)), BigInteger))
        .where(b.source == endpoint.source, b.mode == "dedicated", _tagged(endpoint_tag(endpoint.name)),
               b.bucket_start >= since.replace(minute=0, second=0, microsecond=0))
    ).one()
    return from_nanos(nanos), int(unpriced or 0)


def idle_endpoints(session: Session, settings: Settings, now: datetime) -> list[IdleEndpoint]:
    """Running endpoints with no tokens against them for `idle_endpoint_hours` or more."""
    limit = timedelta(hours=settings.idle_endpoint_hours)
    idle = []
    for endpoint in running_endpoints(session, endpoint_sources(settings)):
        assert endpoint.up_since is not None
        if now - endpoint.up_since < limit:
            continue
        tokens = last_tokens_at(session, endpoint, endpoint.up_since)
        since = max(endpoint.up_since, tokens) if tokens else endpoint.up_since
        if now - since < limit:
            continue
        cost, unpriced = uptime_cost(session, endpoint, since)
        idle.append(IdleEndpoint(endpoint, since, cost, unpriced))
    return idle


def get(session: Session, endpoint_id: str) -> EndpointInfo | None:
    row = session.get(DedicatedEndpoint, endpoint_id)
    return info(row) if row is not None else None
