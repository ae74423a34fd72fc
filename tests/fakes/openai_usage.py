"""A fake OpenAI organization usage API: `GET /v1/organization/usage/completions`, and what the
organization was billed for that usage: `GET /v1/organization/costs`.

It answers what `shared/specs/openai-usage-costs.yaml` describes, from raw usage events
the test supplies: it keeps the events inside `[start_time, end_time)`, applies the
filters, sums them into UTC-aligned buckets of `bucket_width` (empty buckets included,
`results: []`), groups them by `group_by`, and pages `limit` buckets at a time with an
opaque `next_page` cursor.

    with FakeOpenAIUsage(events=[UsageEvent(1730419200, "gpt-4o-mini", input_tokens=10)]) as api:
        httpx.get(api.completions_url, params={"start_time": 1730419200},
                  headers={"Authorization": f"Bearer {api.admin_key}"})

Costs are the same events priced with `prices` (USD per 1M tokens: input, cached input, output,
per model), in daily buckets, one `organization.costs.result` per line item when grouped by
`line_item` (`"<model>, input"`, `"<model>, cached input"`, `"<model>, output"`, with the token
quantity), or one total per bucket otherwise; `extra_costs` adds line items that name no model.
"""

from __future__ import annotations

import base64
import binascii
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from tests.fakes.http_server import FakeHTTPServer, RecordedRequest, Response, api_error

__all__ = ["BUCKET_LIMITS", "BUCKET_SECONDS", "FakeOpenAIUsage", "GROUP_BY_FIELDS", "UsageEvent"]

COMPLETIONS_PATH = "/v1/organization/usage/completions"
COSTS_PATH = "/v1/organization/costs"
COSTS_GROUP_BY = ("project_id", "line_item", "api_key_id")
MILLION = Decimal(1_000_000)
BUCKET_SECONDS = {"1m": 60, "1h": 3600, "1d": 86400}
BUCKET_LIMITS = {"1m": (60, 1440), "1h": (24, 168), "1d": (7, 31)}
"""Per bucket width: (default, maximum) number of buckets a page holds, as the spec says."""
GROUP_BY_FIELDS = ("project_id", "user_id", "api_key_id", "model", "batch", "service_tier")


@dataclass(frozen=True)
class UsageEvent:
    """Raw usage as the fake's organization recorded it: when, which model, what it used.

    `input_tokens` counts all input, cached and cache-write included (as in the spec);
    the audio and image counts are the parts of input/output that were audio or image.
    """

    timestamp: int | float | datetime
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    input_cached_tokens: int = 0
    input_cache_write_tokens: int = 0
    input_audio_tokens: int = 0
    input_cached_audio_tokens: int = 0
    output_audio_tokens: int = 0
    input_image_tokens: int = 0
    input_cached_image_tokens: int = 0
    output_image_tokens: int = 0
    num_model_requests: int = 1
    project_id: str | None = None
    user_id: str | None = None
    api_key_id: str | None = None
    batch: bool = False
    service_tier: str = "default"

    @property
    def unix_time(self) -> float:
        """The timestamp in Unix seconds."""
        if isinstance(self.timestamp, datetime):
            return self.timestamp.timestamp()
        return float(self.timestamp)


COUNTED = tuple(
    f.name for f in fields(UsageEvent) if f.name.endswith("_tokens") or f.name == "num_model_requests"
)


class BadRequest(Exception):
    """A query the real API rejects with 400 invalid_request_error."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


class FakeOpenAIUsage(FakeHTTPServer):
    """Fake OpenAI usage API. `url` is the API base (`http://127.0.0.1:PORT/v1`).

    `admin_key`: the bearer token accepted; anything else gets 401.
    `events`: initial usage; `add_events()` adds more while the server runs.
    `clock`: "now" in Unix seconds, used when a query has no `end_time`.
    `echo_key`: a refused key is echoed back in the error message (raw and URL-encoded).
    """

    def __init__(
        self,
        *,
        admin_key: str = "sk-admin-test",
        events: Iterable[UsageEvent] = (),
        clock: Callable[[], float] = time.time,
        prices: dict[str, tuple[Decimal, Decimal, Decimal]] | None = None,
        extra_costs: Iterable[tuple[int, str, Decimal]] = (),
        echo_key: bool = False,
    ) -> None:
        super().__init__()
        self.admin_key = admin_key
        self.echo_key = echo_key
        self.clock = clock
        self._events: list[UsageEvent] = list(events)
        self.prices = dict(prices or {})
        self.extra_costs = list(extra_costs)  # (timestamp, line item, dollars)

    @property
    def url(self) -> str:
        """The API base URL, `http://127.0.0.1:PORT/v1`."""
        return f"{self.origin}/v1"

    @property
    def completions_url(self) -> str:
        """The full URL of `GET /organization/usage/completions`."""
        return f"{self.origin}{COMPLETIONS_PATH}"

    @property
    def events(self) -> list[UsageEvent]:
        """A snapshot of the usage events the fake serves."""
        with self._lock:
            return list(self._events)

    def add_events(self, *events: UsageEvent) -> None:
        """Record more usage."""
        with self._lock:
            self._events.extend(events)

    def set_events(self, events: Iterable[UsageEvent]) -> None:
        """Replace all usage."""
        with self._lock:
            self._events = list(events)

    # -- serving ---------------------------------------------------------------------

    def handle(self, request: RecordedRequest) -> Response:
        token = request.bearer_token
        if token != self.admin_key:
            message = (
                "You didn't provide an API key."
                if token is None
                else "Incorrect API key provided. You can find your API key at "
                "https://platform.openai.com/account/api-keys."
            )
            code = None if token is None else "invalid_api_key"
            if self.echo_key:  # as a careless provider does: the header it got, raw and URL-encoded
                message = (f"Invalid API key provided: {request.header('Authorization')}. Manage keys at "
                           f"https://keys.example/?key={quote(token or '', safe='')}")
            return Response.json(api_error(401, code, message), 401)
        if request.path not in (COMPLETIONS_PATH, COSTS_PATH):
            return Response.json(api_error(404, None, f"Invalid URL ({request.method} {request.path})"), 404)
        if request.method != "GET":
            return Response.json(api_error(405, None, f"Method {request.method} not allowed."), 405)
        try:
            if request.path == COSTS_PATH:
                return Response.json(self._costs_page(request))
            return Response.json(self._page(request))
        except BadRequest as bad:
            body = api_error(400, None, str(bad))
            body["error"]["param"] = bad.param
            return Response.json(body, 400)

    def _page(self, request: RecordedRequest) -> dict[str, Any]:
        width_name = request.query_value("bucket_width") or "1d"
        if width_name not in BUCKET_SECONDS:
            raise BadRequest("bucket_width", f"Invalid bucket_width {width_name!r}: expected 1m, 1h or 1d.")
        width = BUCKET_SECONDS[width_name]
        start = _int_param(request, "start_time")
        if start is None:
            raise BadRequest("start_time", "Missing required parameter: 'start_time'.")
        end = _int_param(request, "end_time")
        end = int(self.clock()) if end is None else end
        default_limit, max_limit = BUCKET_LIMITS[width_name]
        limit = _int_param(request, "limit")
        limit = default_limit if limit is None else limit
        if not 1 <= limit <= max_limit:
            message = f"limit must be between 1 and {max_limit} for bucket_width={width_name}."
            raise BadRequest("limit", message)
        batch = request.query_value("batch")
        if batch is not None and batch.lower() not in ("true", "false"):
            raise BadRequest("batch", f"Invalid boolean {batch!r} for 'batch'.")
        group_by = request.query_values("group_by")
        unknown = [g for g in group_by if g not in GROUP_BY_FIELDS]
        if unknown:
            raise BadRequest("group_by", f"Invalid group_by field(s): {', '.join(unknown)}.")

        first = start - start % width
        cursor = request.query_value("page")
        page_start = first if not cursor else _decode_cursor(cursor)
        starts = range(page_start, end, width)
        page, rest = starts[:limit], starts[limit:]
        events = [e for e in self._events if start <= e.unix_time < end and _selected(e, request)]
        data = [
            {
                "object": "bucket",
                "start_time": bucket_start,
                "end_time": bucket_start + width,
                "results": _results(
                    [e for e in events if bucket_start <= e.unix_time < bucket_start + width], group_by
                ),
            }
            for bucket_start in page
        ]
        next_page = _encode_cursor(rest[0]) if rest else None
        return {"object": "page", "data": data, "has_more": bool(rest), "next_page": next_page}


    def _costs_page(self, request: RecordedRequest) -> dict[str, Any]:
        width_name = request.query_value("bucket_width") or "1d"
        if width_name != "1d":
            raise BadRequest("bucket_width", f"Invalid bucket_width {width_name!r}: only 1d is supported.")
        start = _int_param(request, "start_time")
        if start is None:
            raise BadRequest("start_time", "Missing required parameter: 'start_time'.")
        end = _int_param(request, "end_time")
        end = int(self.clock()) if end is None else end
        limit = _int_param(request, "limit")
        limit = 7 if limit is None else limit
        if not 1 <= limit <= 180:
            raise BadRequest("limit", "limit must be between 1 and 180.")
        group_by = request.query_values("group_by")
        unknown = [g for g in group_by if g not in COSTS_GROUP_BY]
        if unknown:
            raise BadRequest("group_by", f"Invalid group_by field(s): {', '.join(unknown)}.")
        width = BUCKET_SECONDS["1d"]
        first = start - start % width
        cursor = request.query_value("page")
        starts = range(first if not cursor else _decode_cursor(cursor), end, width)
        page, rest = starts[:limit], starts[limit:]
        data = []
        for bucket_start in page:
            lines = self._line_items(bucket_start, bucket_start + width, start, end)
            data.append({"object": "bucket", "start_time": bucket_start, "end_time": bucket_start + width,
                         "results": _cost_results(lines, "line_item" in group_by)})
        return {"object": "page", "data": data, "has_more": bool(rest),
                "next_page": _encode_cursor(rest[0]) if rest else None}

    def _line_items(self, lo: int, hi: int, start: int, end: int) -> list[tuple[str, Decimal, int | None]]:
        """(line item, dollars, tokens) billed in [lo, hi), within the query's [start, end)."""
        totals: dict[str, list[int]] = {}
        for e in self._events:
            if lo <= e.unix_time < hi and start <= e.unix_time < end and e.model in self.prices:
                acc = totals.setdefault(e.model, [0, 0, 0])
                acc[0] += e.input_tokens - e.input_cached_tokens
                acc[1] += e.input_cached_tokens
                acc[2] += e.output_tokens
        lines: list[tuple[str, Decimal, int | None]] = []
        for model, (uncached, cached, output) in sorted(totals.items()):
            rates = self.prices[model]
            for piece, tokens, rate in (("input", uncached, rates[0]), ("cached input", cached, rates[1]),
                                        ("output", output, rates[2])):
                if tokens:
                    lines.append((f"{model}, {piece}", tokens * rate / MILLION, tokens))
        lines.extend((item, amount, None) for at, item, amount in self.extra_costs if lo <= at < hi)
        return lines


def _cost_results(lines: list[tuple[str, Decimal, int | None]], by_line_item: bool) -> list[dict[str, Any]]:
    def result(amount: Decimal, item: str | None, tokens: int | None) -> dict[str, Any]:
        return {"object": "organization.costs.result", "amount": {"value": amount, "currency": "usd"},
                "line_item": item, "project_id": None, "api_key_id": None, "quantity": tokens,
                "quantity_unit": "tokens" if tokens is not None else None}

    if by_line_item:
        return [result(amount, item, tokens) for item, amount, tokens in lines]
    return [result(sum((amount for _, amount, _ in lines), Decimal(0)), None, None)] if lines else []


def _results(events: list[UsageEvent], group_by: list[str]) -> list[dict[str, Any]]:
    """Sum events per group, as `organization.usage.completions.result` objects."""
    groups: dict[tuple[Any, ...], dict[str, int]] = {}
    for event in events:
        key = tuple(getattr(event, name) if name in group_by else None for name in GROUP_BY_FIELDS)
        totals = groups.setdefault(key, dict.fromkeys(COUNTED, 0))
        for name in COUNTED:
            totals[name] += getattr(event, name)
    ordered = sorted(groups.items(), key=lambda item: [(v is not None, str(v)) for v in item[0]])
    return [_result(totals, dict(zip(GROUP_BY_FIELDS, key))) for key, totals in ordered]


def _result(t: dict[str, int], dimensions: dict[str, Any]) -> dict[str, Any]:
    uncached = t["input_tokens"] - t["input_cached_tokens"] - t["input_cache_write_tokens"]
    return {
        "object": "organization.usage.completions.result",
        "input_tokens": t["input_tokens"],
        "input_cached_tokens": t["input_cached_tokens"],
        "input_cache_write_tokens": t["input_cache_write_tokens"],
        "input_uncached_tokens": uncached,
        "output_tokens": t["output_tokens"],
        "input_text_tokens": uncached - t["input_audio_tokens"] - t["input_image_tokens"],
        "output_text_tokens": t["output_tokens"] - t["output_audio_tokens"] - t["output_image_tokens"],
        "input_cached_text_tokens": t["input_cached_tokens"]
        - t["input_cached_audio_tokens"]
        - t["input_cached_image_tokens"],
        "input_audio_tokens": t["input_audio_tokens"],
        "input_cached_audio_tokens": t["input_cached_audio_tokens"],
        "output_audio_tokens": t["output_audio_tokens"],
        "input_image_tokens": t["input_image_tokens"],
        "input_cached_image_tokens": t["input_cached_image_tokens"],
        "output_image_tokens": t["output_image_tokens"],
        "num_model_requests": t["num_model_requests"],
        **dimensions,
    }


def _selected(event: UsageEvent, request: RecordedRequest) -> bool:
    """Whether the query's filters (project_ids, user_ids, api_key_ids, models, batch) keep `event`."""
    for param, attribute in (
        ("project_ids", "project_id"),
        ("user_ids", "user_id"),
        ("api_key_ids", "api_key_id"),
        ("models", "model"),
    ):
        wanted = request.query_values(param)
        if wanted and getattr(event, attribute) not in wanted:
            return False
    batch = request.query_value("batch")
    return batch is None or event.batch == (batch.lower() == "true")


def _int_param(request: RecordedRequest, name: str) -> int | None:
    value = request.query_value(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise BadRequest(name, f"Invalid integer {value!r} for '{name}'.") from None


def _encode_cursor(bucket_start: int) -> str:
    return "page_" + base64.b64encode(struct.pack(">q", bucket_start)).decode()


def _decode_cursor(cursor: str) -> int:
    try:
        (bucket_start,) = struct.unpack(">q", base64.b64decode(cursor.removeprefix("page_"), validate=True))
    except (binascii.Error, struct.error):
        raise BadRequest("page", f"Invalid page cursor {cursor!r}.") from None
    return int(bucket_start)
