"""Usage buckets written straight into the ledger, for tests that need spend in it: one factory
for a bucket's columns, one for spend at the tests' Llama price, one insert."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from db.models import UsageBucket, to_nanos

LLAMA = "meta-llama/Llama-3.3-70B-Instruct-Turbo"
LLAMA_RATE = Decimal("0.88")  # its catalog price, $ per 1M tokens in and out


def usage_bucket(bucket_start: datetime, **fields: Any) -> dict[str, Any]:
    """The columns of one hourly bucket from `bucket_start`: source "test", Llama served serverless,
    no usage, a zero cost and every dimension empty, unless `fields` say otherwise."""
    values: dict[str, Any] = dict(
        bucket_start=bucket_start, width="1h", source="test", model=LLAMA, mode="serverless", project="",
        feature="", api_key="", environment="", tags="", input_tokens=0, cached_input_tokens=0, output_tokens=0,
        requests=0, uptime_minutes=0, cost_nanos=0)
    values.update(fields)
    return values


def spend_bucket(at: datetime, dollars: Decimal | int | str, *, exact: bool = True, priced: bool = True,
                 **fields: Any) -> dict[str, Any]:
    """A bucket in `at`'s hour of as many input tokens as `dollars` buys at Llama's $0.88/1M, one
    request a thousand tokens (at least one); it costs `dollars` (`exact`) or what those whole
    tokens cost, or is unpriced (not `priced`)."""
    dollars = Decimal(dollars)
    tokens = int(dollars / LLAMA_RATE * 1_000_000)
    cost = dollars if exact else Decimal(tokens) * LLAMA_RATE / 1_000_000
    values: dict[str, Any] = dict(input_tokens=tokens, requests=max(1, tokens // 1000),
                                  cost_nanos=to_nanos(cost) if priced else None)
    values.update(fields)
    return usage_bucket(at.replace(minute=0, second=0, microsecond=0), **values)


def add_buckets(sessions: sessionmaker[Session], rows: Sequence[dict[str, Any]]) -> None:
    """Insert `rows` (each a full set of columns) in one transaction."""
    with sessions() as session, session.begin():
        for i in range(0, len(rows), 5000):
            session.execute(insert(UsageBucket), rows[i:i + 5000])
