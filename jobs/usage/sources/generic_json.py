"""A generic JSON usage endpoint (a gateway, an in-house collector) read through a field map.

`GET {base_url}?start_time=..&end_time=..` (Unix seconds) answers JSON with a list of
records at `fields.records` (a dotted path); each record names its time, model and tokens
at the mapped paths. Records outside the window are ignored (an endpoint may not filter),
the rest are validated like pushed records, summed into buckets, and replace what this
source held for the window in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from db.engine import transaction
from db.ledger import BucketRow, merge_rows, upsert_pulled_buckets
from db.source_state import source_state
from jobs.config.context import Context
from jobs.config.sections import FieldMap, Source
from jobs.usage.costing import Costing, bucket_records
from jobs.usage.records import UsageRecord, latest_allowed, validate
from jobs.usage.sources import WIDTH_SECONDS, PullResult, RetryPolicy, SchemaError, client_for, window_start
from jobs.usage.validation import RecordError

_MISSING = object()


def dig(record: Any, path: str) -> Any:
    """The value at a dotted path (`usage.prompt_tokens`), or None where any step is missing."""
    value = record
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part, _MISSING)
        elif isinstance(value, list) and part.isdecimal() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
        if value is _MISSING:
            return None
    return value


def records_parser(fields: FieldMap, latest: int) -> Callable[[Any], list[UsageRecord]]:
    """A parse function for SourceClient: the payload's records, validated, or SchemaError."""

    def parse(payload: Any) -> list[UsageRecord]:
        items = dig(payload, fields.records) if fields.records else payload
        if not isinstance(items, list):
            raise SchemaError(f"no list of records at {fields.records!r}")
        records = []
        for index, item in enumerate(items):
            try:
                records.append(map_record(item, fields, latest))
            except RecordError as exc:
                raise SchemaError(f"record {index}: {exc}") from None
        return records

    return parse


def map_record(item: Any, fields: FieldMap, latest: int) -> UsageRecord:
    """One record through the field map, validated like a pushed record."""
    if not isinstance(item, dict):
        raise RecordError("a record is not an object")

    def at(path: str | None) -> Any:
        return dig(item, path) if path else None

    when = at(fields.time)
    if isinstance(when, (int, float)) and not isinstance(when, bool) and when > 1e11:
        when = when / 1000  # milliseconds
    return validate(
        event_id=_as_text(at(fields.event_id)),
        created=when if isinstance(when, (int, float)) and not isinstance(when, bool) else None,
        timestamp=when if isinstance(when, str) else None,
        model=at(fields.model),
        prompt_tokens=at(fields.input_tokens),
        completion_tokens=at(fields.output_tokens),
        cached_tokens=at(fields.cached_input_tokens),
        requests=at(fields.requests),
        mode=at(fields.mode),
        project=_as_text(at(fields.project)),
        feature=_as_text(at(fields.feature)),
        api_key=_as_text(at(fields.api_key)),
        environment=_as_text(at(fields.environment)),
        tags=None,
        latest=latest,
    )


def _as_text(value: Any) -> Any:
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def rebucket(rows: list[BucketRow], width: str) -> list[BucketRow]:
    """Hour rows moved to day buckets when the source is configured with `1d`."""
    if width == "1h":
        return rows
    seconds = WIDTH_SECONDS[width]
    for row in rows:
        ts = int(row.bucket_start.timestamp())
        row.bucket_start = datetime.fromtimestamp(ts - ts % seconds, timezone.utc)
        row.width = width
    return rows


def pull_generic_json(
    context: Context,
    source: Source,
    now: datetime,
    *,
    retry: RetryPolicy | None = None,
) -> PullResult:
    """Read the window from the endpoint and make it this source's usage for that window."""
    sessions, settings, catalog = context.sessions, context.settings, context.catalog
    with sessions() as session:
        state = source_state(session, source.name)
        since = window_start(state.cursor if state else None, source, settings, now)
    start, end = int(since.timestamp()), int(now.timestamp())
    parse = records_parser(source.fields, latest_allowed(now))
    with client_for(source, source.api_key(), retry) as client:
        records = client.get_json(source.base_url, {"start_time": start, "end_time": end}, parse)
    seen: set[str] = set()
    kept = []
    for record in records:
        if record.hour < start or record.hour >= end:
            continue
        if record.event_id is not None:
            if record.event_id in seen:
                continue
            seen.add(record.event_id)
        kept.append(record)
    with transaction(sessions) as session:
        costing = Costing(catalog, session)
        rows = rebucket(bucket_records(kept), source.bucket_width)
        written = upsert_pulled_buckets(
            session, source.name, [costing.cost(row) for row in merge_rows(rows)], replace_window=(since, now)
        )
    newest = max((row.bucket_start for row in rows if row.requests or row.input_tokens or row.output_tokens),
                 default=None)
    return PullResult(source.name, since, now, 1, written, newest)

