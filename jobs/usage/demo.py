"""A realistic month of usage for `budget-guard demo`: three teams on together.ai, an interactive
chat feature with weekday peaks, a nightly summarization job that belongs on batch, a
dedicated endpoint left running, one budget about to be crossed and one forecast to be."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from db.ledger import BucketRow, add_buckets
from jobs.config.context import Context
from jobs.config.sections import Offline
from jobs.usage.costing import Costing

CHAT_MODEL = "meta-llama/Llama-3.3-70B-Instruct-Turbo"
SUMMARY_MODEL = "deepseek-ai/DeepSeek-V3"
RESEARCH_MODEL = "Qwen/Qwen3-235B-A22B-Instruct-2507-tput"
ENDPOINT_MODEL = "arcee-ai/maestro-reasoning"
ENDPOINT_DOLLARS_PER_MINUTE = Decimal("0.0665")  # 1x H100 at 6.65 cents a minute
HISTORY_DAYS = 75
ALERT_CHANNEL = "C0DEMOALERTS"
DIGEST_CHANNEL = "C0DEMODIGEST"


@dataclass(frozen=True)
class Workload:
    """Who runs what, and the shape of its traffic."""

    project: str
    feature: str
    model: str
    requests_per_hour: float
    input_tokens: int
    output_tokens: int
    nightly: bool = False


WORKLOADS = (
    Workload("search", "chat", CHAT_MODEL, 5400, 2500, 400),
    Workload("support", "chat", CHAT_MODEL, 2400, 1800, 350),
    Workload("support", "nightly-summaries", SUMMARY_MODEL, 6600, 6000, 1500, nightly=True),
    Workload("research", "eval", RESEARCH_MODEL, 700, 3000, 900),
)


DEMO_OFFLINE = Offline(features=["nightly-summaries"])
MIN_FULL_DAYS = 15  # of the month before month-to-date, budgets and forecasts look like a real month's


def simulated_now(now: datetime) -> datetime:
    """The instant the demo plays (UTC): `now` once 15 full days of its month have passed; earlier
    in a month, the same weekday and hour a week or more back, late in the previous month (a day
    that has happened, not one still to come)."""
    simulated = now
    while simulated.day <= MIN_FULL_DAYS:
        simulated -= timedelta(weeks=1)
    return simulated


def _chat_shape(at: datetime) -> float:
    """Weekday office hours peak; nights and weekends are quiet."""
    weekday = 1.0 if at.weekday() < 5 else 0.35
    daylight = max(0.08, math.sin(math.pi * (at.hour - 6) / 14)) if 6 <= at.hour <= 20 else 0.08
    return weekday * daylight


def generate(context: Context, *, now: datetime | None = None, seed: int = 42) -> int:
    """Write the demo's buckets to the ledger; returns how many."""
    now = (now or datetime.now(timezone.utc)).replace(minute=0, second=0, microsecond=0)
    rng = random.Random(seed)
    start = now - timedelta(days=HISTORY_DAYS)
    rows: list[BucketRow] = []
    hour = start
    while hour < now:
        growth = 1 + 0.4 * (hour - start).days / HISTORY_DAYS  # usage grows over the weeks
        for w in WORKLOADS:
            if w.nightly:
                if hour.hour not in (1, 2, 3):
                    continue
                requests = int(w.requests_per_hour * rng.uniform(0.9, 1.1))
            else:
                requests = int(w.requests_per_hour * _chat_shape(hour) * growth * rng.uniform(0.85, 1.15))
            if requests <= 0:
                continue
            rows.append(BucketRow(bucket_start=hour, width="1h", model=w.model, mode="serverless", project=w.project,
                                  feature=w.feature, api_key=f"key-{w.project}", environment="prod",
                                  input_tokens=requests * w.input_tokens, output_tokens=requests * w.output_tokens,
                                  requests=requests))
        hour += timedelta(hours=1)
    with context.sessions() as session, session.begin():
        costing = Costing(context.catalog, session)
        written = add_buckets(session, "demo", [costing.cost(row) for row in rows])
        written += add_buckets(session, "together-endpoints", _endpoint_uptime(now - timedelta(days=12), now))
    return written


def _endpoint_uptime(since: datetime, until: datetime) -> list[BucketRow]:
    """A dedicated endpoint someone started twelve days ago and never stopped."""
    rows = []
    hour = since
    while hour < until:
        rows.append(BucketRow(bucket_start=hour, width="1h", model=ENDPOINT_MODEL, mode="dedicated",
                              project="research", tags="endpoint=maestro-eval-h100", uptime_minutes=60,
                              cost_nanos=int(ENDPOINT_DOLLARS_PER_MINUTE * 60 * 10**9)))
        hour += timedelta(hours=1)
    return rows
