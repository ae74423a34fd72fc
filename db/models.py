"""The tables. Money is stored as integer nano-dollars (exact sums on every engine); time as UTC."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NANOS_PER_DOLLAR = 10**9
# What one usage bucket may hold, far inside a BIGINT (9.2e18) so that adding one more batch to
# a full bucket cannot overflow in the statement itself, and sums over buckets stay in range.
MAX_BUCKET_COUNT = 10**15  # tokens, requests or minutes
MAX_BUCKET_NANOS = 10**16  # $10,000,000


def to_nanos(amount: Decimal) -> int:
    """Dollars to integer nano-dollars, rounding half-even below a nano-dollar."""
    return int((amount * NANOS_PER_DOLLAR).to_integral_value())


def from_nanos(nanos: int | None) -> Decimal:
    """Integer nano-dollars back to exact dollars."""
    return Decimal(int(nanos or 0)) / NANOS_PER_DOLLAR


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime, stored naive in UTC so SQLite and PostgreSQL agree."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; budget-guard stores aware UTC times")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.replace(tzinfo=timezone.utc) if value is not None else None


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class PriceRecord(Base):
    """A price that costed some usage: the rates themselves, so history can be re-costed on purpose."""

    __tablename__ = "prices"
    __table_args__ = (
        UniqueConstraint(
            "provider", "model", "mode", "source", "effective_from", "input_rate", "cached_rate",
            "output_rate", "minute_rate", name="uq_prices_identity",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(32))
    effective_from: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    input_rate: Mapped[Decimal] = mapped_column(Numeric(18, 9))
    cached_rate: Mapped[Decimal] = mapped_column(Numeric(18, 9))
    output_rate: Mapped[Decimal] = mapped_column(Numeric(18, 9))
    minute_rate: Mapped[Decimal] = mapped_column(Numeric(18, 9), default=Decimal(0))


class UsageBucket(Base):
    """Tokens, requests and cost of one model, mode and set of dimensions in one time bucket.

    `model` is the name the usage carried (part of the key, so pulls and pushes stay
    idempotent); `counted_model` below is the name totals, rollups and budgets count it under."""

    __tablename__ = "usage_buckets"
    __table_args__ = (
        UniqueConstraint(
            "bucket_start", "width", "source", "model", "mode", "project", "feature", "api_key",
            "environment", "tags", name="uq_usage_buckets_key",
        ),
        Index("ix_usage_buckets_start_model", "bucket_start", "model"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    bucket_start: Mapped[datetime] = mapped_column(UTCDateTime())
    width: Mapped[str] = mapped_column(String(2))  # "1h" or "1d"
    source: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(200))  # as the usage named it
    # The catalog model that name resolved to when last costed; NULL: none matched.
    catalog_model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    mode: Mapped[str] = mapped_column(String(16))
    project: Mapped[str] = mapped_column(String(128), default="")
    feature: Mapped[str] = mapped_column(String(128), default="")
    api_key: Mapped[str] = mapped_column(String(128), default="")
    environment: Mapped[str] = mapped_column(String(64), default="")
    tags: Mapped[str] = mapped_column(String(512), default="")  # "k=v,k2=v2", sorted
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cached_input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    uptime_minutes: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_nanos: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # None: unpriced
    price_id: Mapped[int | None] = mapped_column(ForeignKey("prices.id"), nullable=True)
    # What the source itself said the usage cost (LiteLLM's response_cost); None: it said nothing.
    reported_cost_nanos: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


counted_model = func.coalesce(UsageBucket.catalog_model, UsageBucket.model)
"""The model a bucket counts under: its catalog model, else the name as recorded."""


class SeenEvent(Base):
    """Ids of pushed or imported records already counted, so a repeat counts once."""

    __tablename__ = "seen_events"

    event_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SourceState(Base):
    """Where a pulled source's cursor stands and how its last runs went."""

    __tablename__ = "source_state"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    cursor: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_attempt: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_success: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)  # first failure in a row
    # Newest bucket that held usage; before any, the first successful pull.
    last_data_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # What the last pull that had something to say said (e.g. broken lines skipped), and when.
    last_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_note_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class SyncedPrice(Base):
    """A price read from a provider's API, start-dated from when we first saw it."""

    __tablename__ = "synced_prices"
    __table_args__ = (UniqueConstraint("provider", "model", "effective_from", name="uq_synced_prices_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(200))
    effective_from: Mapped[datetime] = mapped_column(UTCDateTime())
    input_rate: Mapped[Decimal] = mapped_column(Numeric(18, 9))
    output_rate: Mapped[Decimal] = mapped_column(Numeric(18, 9))
    cached_rate: Mapped[Decimal | None] = mapped_column(Numeric(18, 9), nullable=True)


class SyncedHardware(Base):
    """A dedicated hardware price read from together.ai's /v1/hardware."""

    __tablename__ = "synced_hardware"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    cents_per_minute: Mapped[Decimal] = mapped_column(Numeric(18, 9))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class JobClaim(Base):
    """One row per (job, period): whoever inserts it runs the job; everyone else skips."""

    __tablename__ = "job_claims"
    __table_args__ = (UniqueConstraint("job", "period", name="uq_job_claims_job_period"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job: Mapped[str] = mapped_column(String(64))
    period: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))  # running, done, failed
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class OutboxMessage(Base):
    """A Slack message waiting to be posted, being posted, or posted (with its ts)."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_next", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(32))  # alert, digest, ...
    channel: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    blocks: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    thread_of: Mapped[str | None] = mapped_column(String(200), nullable=True)  # dedupe_key of the parent
    attachment: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    attachment_name: Mapped[str | None] = mapped_column(String(128), nullable=True)
    attachment_alt: Mapped[str | None] = mapped_column(Text, nullable=True)  # what the chart shows, in words
    # pending, sending, sent; failed (Slack refused it for good: `failed_reason`); skipped (it may have
    # reached Slack and cannot be checked, so it was not sent again)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    claimed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    posted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    ts: Mapped[str | None] = mapped_column(String(32), nullable=True)
    posted_channel: Mapped[str | None] = mapped_column(String(64), nullable=True)
    file_posted: Mapped[bool] = mapped_column(Boolean, default=False)
    # A post or upload that ended without an answer may have reached Slack: look before repeating it.
    uncertain: Mapped[bool] = mapped_column(Boolean, default=False)
    late: Mapped[bool] = mapped_column(Boolean, default=False)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    failed_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)  # Slack's error code, or "unchecked"
    file_id: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the chart's upload, once its bytes are up


class OperatorNotice(Base):
    """Something only an operator can fix, told once: while it is open, `open_key` holds its
    problem (unique), so the same problem is not told twice; resolving it clears the key."""

    __tablename__ = "operator_notices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    problem: Mapped[str] = mapped_column(String(200))  # "token", "channel:C0123", "message:42", ...
    open_key: Mapped[str | None] = mapped_column(String(200), unique=True, nullable=True)
    text: Mapped[str] = mapped_column(Text)  # Slack mrkdwn; channels as <#C0123>
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_to: Mapped[str | None] = mapped_column(String(64), nullable=True)  # a channel ID, "home" or "log"
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class SlackDelivery(Base):
    """A Slack event or interaction already handled, so Slack's retries of it change nothing."""

    __tablename__ = "slack_deliveries"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class Budget(Base):
    """A monthly budget; rows from the TOML file are the starting set, Slack edits win."""

    __tablename__ = "budgets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    amount: Mapped[Decimal] = mapped_column(Numeric(20, 2))
    scope: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    thresholds: Mapped[list[int]] = mapped_column(JSON, default=list)
    forecast: Mapped[bool] = mapped_column(Boolean, default=True)
    channel: Mapped[str | None] = mapped_column(String(64), nullable=True)
    mention: Mapped[str | None] = mapped_column(String(128), nullable=True)
    origin: Mapped[str] = mapped_column(String(16), default="file")  # file or slack
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    on_exceed: Mapped[str] = mapped_column(String(32), default="alert")  # alert or stop-endpoints


class Alert(Base):
    """An alert raised once per budget, period, kind and threshold."""

    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("budget", "period", "kind", "threshold", name="uq_alerts_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    budget: Mapped[str] = mapped_column(String(64))
    period: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))
    threshold: Mapped[str] = mapped_column(String(64), default="")
    outbox_key: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    acknowledged_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    snoozed_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class PrepaidEntry(Base):
    """A prepaid balance stated, or a top-up recorded, with `/budget credit` (the file's are settings)."""

    __tablename__ = "prepaid_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # set or topup
    amount: Mapped[Decimal] = mapped_column(Numeric(20, 2))
    effective_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(64))


class DedicatedEndpoint(Base):
    """A together.ai dedicated endpoint as the last pull of its source saw it."""

    __tablename__ = "dedicated_endpoints"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)  # together.ai's endpoint id
    source: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(256))
    model: Mapped[str] = mapped_column(String(200))
    hardware: Mapped[str | None] = mapped_column(String(128), nullable=True)
    state: Mapped[str] = mapped_column(String(16))  # together.ai's state, or NOT_BILLED
    up_since: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)  # None: not billed now
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    stopped_by: Mapped[str | None] = mapped_column(String(128), nullable=True)  # a user, or budget:NAME
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class BudgetSnapshot(Base):
    """A budget's figures as the last budget check computed them (what /v1/budgets/status serves)."""

    __tablename__ = "budget_snapshots"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    period: Mapped[str] = mapped_column(String(16))  # the local month, YYYY-MM
    scope: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    amount: Mapped[Decimal] = mapped_column(Numeric(20, 2))
    spent_nanos: Mapped[int] = mapped_column(BigInteger)
    forecast_nanos: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    low_nanos: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    high_nanos: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    on_exceed: Mapped[str] = mapped_column(String(32), default="alert")
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime())
