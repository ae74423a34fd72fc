"""An OpenAI-style organization usage endpoint: `GET {base}/v1/organization/usage/completions`
(shared/specs/openai-usage-costs.yaml), time buckets grouped by model, project, API key and
batch, paged with `next_page` until `has_more` is false.

Each page holds whole time buckets, so each page commits on its own and replaces what this
source held for the time it covers: a crash after page k and a retry rewrite pages 1..k
with the same figures and carry on, which is exactly one clean pull.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from db.engine import transaction
from db.ledger import BucketRow, upsert_pulled_buckets
from db.source_state import source_state
from jobs.config.context import Context
from jobs.config.sections import Source
from jobs.usage import validation
from jobs.usage.costing import Costing
from jobs.usage.sources import PullResult, RetryPolicy, SchemaError, SourceError, api_root, client_for, window_start
from jobs.usage.validation import MAX_BUCKET_COUNT, RecordError

PATH = "/v1/organization/usage/completions"
GROUP_BY = ["model", "project_id", "api_key_id", "batch"]
PAGE_LIMIT = {"1h": 168, "1d": 31}  # the most buckets a page may hold, per the spec
MAX_PAGES = 10_000


@dataclass(frozen=True)
class UsagePage:
    """One page of the answer: its buckets as (start, end, rows), and the next page's cursor."""

    buckets: list[tuple[int, int, list[dict[str, Any]]]]
    next_page: str | None


def page_envelope(payload: Any) -> tuple[list[Any], str | None]:
    """A page's `data` and the next page's cursor (None on the last page), as both organization
    endpoints (usage and costs) page them; SchemaError if the envelope is off-spec."""
    if not isinstance(payload, dict) or payload.get("object") != "page" or not isinstance(payload.get("data"), list):
        raise SchemaError("expected an object of type page with a data list")
    has_more = payload.get("has_more")
    if not isinstance(has_more, bool):
        raise SchemaError("has_more missing or not a boolean")
    next_page = payload.get("next_page")
    if has_more and not isinstance(next_page, str):
        raise SchemaError("has_more is true but next_page is not a cursor")
    return payload["data"], next_page if has_more else None


def parse_page(payload: Any) -> UsagePage:
    """Check a page against the spec's `UsageResponse`; SchemaError if it does not match."""
    data, next_page = page_envelope(payload)
    buckets = []
    for bucket in data:
        if not isinstance(bucket, dict):
            raise SchemaError("a bucket is not an object")
        start, end, results = bucket.get("start_time"), bucket.get("end_time"), bucket.get("results")
        if type(start) is not int or type(end) is not int or not 0 <= start < end < 10**11 \
                or not isinstance(results, list):
            raise SchemaError("a bucket lacks start_time, end_time or results")
        for result in results:
            _check_result(result)
        buckets.append((start, end, results))
    return UsagePage(buckets, next_page)


def _check_result(result: Any) -> None:
    """A result holds counts a bucket can store and strings both engines keep (jobs.usage.validation)."""
    if not isinstance(result, dict):
        raise SchemaError("a result is not an object")
    for name in ("input_tokens", "output_tokens", "num_model_requests", "input_cached_tokens"):
        value = result.get(name, 0 if name == "input_cached_tokens" else None)
        if value is None and name == "input_cached_tokens":
            continue
        if type(value) is not int:
            raise SchemaError(f"a result's {name} is missing or not a count")
        try:
            validation.count(value, name, MAX_BUCKET_COUNT)
        except RecordError as exc:
            raise SchemaError(f"a result's {exc}") from None
    for name in ("model", "project_id", "api_key_id"):
        value = result.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise SchemaError(f"a result's {name} is not a string")
        problem = validation.text_problem(value, 10_000)
        if problem is not None:
            raise SchemaError(f"a result's {name} {problem}")


def result_row(start: int, width: str, result: dict[str, Any]) -> BucketRow:
    """A ledger row from one `organization.usage.completions.result` (not yet costed)."""
    return BucketRow(
        bucket_start=datetime.fromtimestamp(start, timezone.utc),
        width=width,
        model=(result.get("model") or "unknown")[:200],
        mode="batch" if result.get("batch") is True else "serverless",
        project=(result.get("project_id") or "")[:128],
        api_key=(result.get("api_key_id") or "")[:128],
        input_tokens=result["input_tokens"],
        cached_input_tokens=min(result.get("input_cached_tokens") or 0, result["input_tokens"]),
        output_tokens=result["output_tokens"],
        requests=result["num_model_requests"],
    )


def pull_openai_usage(
    context: Context,
    source: Source,
    now: datetime,
    *,
    retry: RetryPolicy | None = None,
    page_limit: int | None = None,
    after_page: Callable[[int], None] | None = None,
) -> PullResult:
    """Pull completions usage from the cursor (less the overlap) to `now`, page by page.

    `page_limit` sets buckets per page (default: the spec's maximum); `after_page(n)` runs
    after page n committed (tests use it to crash a pull half-way)."""
    sessions, settings, catalog = context.sessions, context.settings, context.catalog
    key = source.api_key()
    if not key:
        raise SourceError(f"{source.api_key_env or 'api_key_env'} is not set: the usage API needs an admin key")
    with sessions() as session:
        state = source_state(session, source.name)
        since = window_start(state.cursor if state else None, source, settings, now)
    params: dict[str, Any] = {
        "start_time": int(since.timestamp()),
        "end_time": int(now.timestamp()),
        "bucket_width": source.bucket_width,
        "group_by": GROUP_BY,
        "limit": page_limit or PAGE_LIMIT[source.bucket_width],
    }
    url = api_root(source.base_url) + PATH
    covered = int(params["start_time"])
    pages = rows = 0
    newest: datetime | None = None
    with client_for(source, key, retry) as client:
        cursor: str | None = None
        while True:
            page = client.get_json(url, {**params, "page": cursor} if cursor else params, parse_page)
            pages += 1
            page_end = max((end for _, end, _ in page.buckets), default=covered)
            until = page_end if page.next_page else max(page_end, params["end_time"])
            bucket_rows = [result_row(start, source.bucket_width, r) for start, _, results in page.buckets for r in results]
            used = [r.bucket_start for r in bucket_rows if r.requests or r.input_tokens or r.output_tokens]
            if used:
                newest = max(used) if newest is None else max(newest, *used)
            with transaction(sessions) as session:
                costing = Costing(catalog, session)
                rows += upsert_pulled_buckets(
                    session,
                    source.name,
                    [costing.cost(row) for row in bucket_rows],
                    replace_window=(_utc(covered), _utc(until)),
                )
            covered = max(covered, until)
            if after_page is not None:
                after_page(pages)
            if page.next_page is None:
                break
            if pages >= MAX_PAGES or page.next_page == cursor:
                raise SourceError(f"{url}: paging does not end (page {pages})")
            cursor = page.next_page
    return PullResult(source.name, since, now, pages, rows, newest)


def _utc(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)
