"""together.ai fine-tuning jobs as training spend: each job's `total_price`, on the day it finished.

`GET /v1/fine-tunes` lists the jobs (`FinetuneResponseTruncated`). A `completed` job that
finished at or after the pull's window start and was not counted before is recorded once
(`together-fine-tune:ID` in `seen_events`, claimed in the same transaction) as a ledger row of
mode "training": its cost and no tokens (training tokens are not inference tokens, so nothing
prices, forecasts or advises on them as if they were), under the base `model`, tagged
`fine_tune=ID`, in the hour it finished (its `job_complete` event, else `updated_at`).

`total_price` is an integer the spec gives no unit for; together's own SDK shows it as dollars
after dividing by 1e9 (`finetune_price_to_dollars`), so it is nano-dollars: the ledger's unit.
Cancelled and failed jobs are not counted: the list does not say what of their price was
charged (refunds arrive as events). A completed job without a usable price is left uncounted
(and said), so it is counted once the price appears.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from db.engine import transaction
from db.ledger import BucketRow, add_buckets, claim_event_ids
from db.source_state import source_state
from jobs.config.context import Context
from jobs.config.sections import Source
from jobs.usage.sources import PullResult, RetryPolicy, SchemaError, api_root, client_for, window_start
from jobs.usage.sources.together import optional_time, parse_time, tag_value, together_key
from jobs.usage.validation import storable

CLAIM_PREFIX = "together-fine-tune:"
MAX_PRICE_NANOS = 10**18  # a billion dollars: more is not a price, and overflows nothing below it
UNKNOWN_MODEL = "unknown base model"


@dataclass(frozen=True)
class FineTune:
    """A listed fine-tuning job, reduced to what costing it needs."""

    id: str
    status: str
    model: str
    finished_at: datetime
    total_price: int | None  # nano-dollars; None: absent or unusable

    @property
    def claim(self) -> str:
        return CLAIM_PREFIX + self.id


def _finished_at(item: dict[str, Any]) -> datetime:
    """The `job_complete` event's time, else `updated_at` (the spec's last update of the job)."""
    for event in item.get("events") or []:
        if isinstance(event, dict) and event.get("type") == "job_complete" and isinstance(event.get("created_at"), str):
            try:
                return parse_time(event["created_at"], "events.created_at")
            except SchemaError:
                break
    return parse_time(item.get("updated_at"), "updated_at")


def _price(value: Any) -> int | None:
    return value if type(value) is int and 0 <= value <= MAX_PRICE_NANOS else None


def parse_fine_tunes(payload: Any) -> list[FineTune]:
    """The jobs of `GET /v1/fine-tunes` (`FinetuneTruncatedList`), checked for the fields we read."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        raise SchemaError("expected an object with a data list")
    jobs = []
    for item in payload["data"]:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
            raise SchemaError("a fine-tune job lacks an id")
        if not isinstance(item.get("status"), str):
            raise SchemaError(f"fine-tune {item['id'][:80]} has no status")
        optional_time(item.get("created_at"), "created_at")
        model = item.get("model")
        jobs.append(FineTune(
            id=item["id"][:160],
            status=item["status"],
            model=storable(model, 200) if isinstance(model, str) and model.strip() else UNKNOWN_MODEL,
            finished_at=_finished_at(item),
            total_price=_price(item.get("total_price")),
        ))
    return jobs


def training_row(job: FineTune) -> BucketRow:
    """The job's spend as one ledger row: cost, no tokens, in the hour it finished."""
    assert job.total_price is not None
    return BucketRow(
        bucket_start=job.finished_at.replace(minute=0, second=0, microsecond=0),
        width="1h",
        model=job.model,
        mode="training",
        tags=f"fine_tune={tag_value(job.id)}"[:512],
        cost_nanos=job.total_price,
    )


def pull_together_fine_tunes(
    context: Context,
    source: Source,
    now: datetime,
    *,
    retry: RetryPolicy | None = None,
) -> PullResult:
    """Record every fine-tuning job completed since the window start and not counted yet."""
    sessions, settings = context.sessions, context.settings
    key = together_key(source, settings)
    with sessions() as session:
        state = source_state(session, source.name)
        since = window_start(state.cursor if state else None, source, settings, now)
    with client_for(source, key, retry) as client:
        jobs = client.get_json(f"{api_root(source.base_url)}/v1/fine-tunes", None, parse_fine_tunes)
    latest = now + timedelta(days=1)
    done = [j for j in jobs if j.status == "completed" and since <= j.finished_at <= latest]
    notes = [f"fine-tune {j.id}: completed without a usable total_price; not counted yet"
             for j in done if j.total_price is None]
    priced = list({j.id: j for j in done if j.total_price is not None}.values())
    newest: datetime | None = None
    with transaction(sessions) as session:
        fresh = claim_event_ids(session, [j.claim for j in priced], now)
        counted = [j for j in priced if j.claim in fresh]
        rows = add_buckets(session, source.name, [training_row(j) for j in counted])
        if counted:
            newest = max(j.finished_at for j in counted)
    return PullResult(source.name, since, now, 1, rows, newest, notes=tuple(notes))
