"""What OpenAI billed: `GET {base}/v1/organization/costs` (shared/specs/openai-usage-costs.yaml),
daily buckets grouped by `line_item`, paged with `next_page` until `has_more` is false.

A line item names a model and what was billed for it, as in `gpt-4o-mini-2024-07-18, input`,
`..., cached input`, `..., output` (sometimes behind a tier, `priority | gpt-5, output`, or with a
modality word after the model); items without a model (`web search tool calls`) are kept apart.
With `quantity_unit` tokens the item also says how many tokens it billed.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone
from decimal import Decimal
from typing import Any

from jobs.config.sections import Source
from jobs.usage.sources import RetryPolicy, SchemaError, SourceError, api_root, client_for
from jobs.usage.sources.openai_usage import page_envelope

PATH = "/v1/organization/costs"
PAGE_LIMIT = 180  # the most daily buckets a page may hold, per the spec
MAX_PAGES = 1_000


@dataclass
class Billed:
    """One model's bill on one UTC day: dollars, and the tokens the line items counted."""

    amount: Decimal = Decimal(0)
    input_tokens: int = 0  # cached included, as the ledger counts them
    output_tokens: int = 0
    counted_tokens: bool = False  # some line item gave a token quantity


@dataclass
class Bill:
    """A window of OpenAI's bill: per (day, model), and per day what no model accounts for."""

    by_model: dict[tuple[date, str], Billed] = field(default_factory=dict)
    other: dict[date, Decimal] = field(default_factory=lambda: defaultdict(Decimal))


def line_item_model(line_item: str | None) -> tuple[str | None, str]:
    """(model, what was billed) from a line item; model None for items that name no model."""
    if not line_item:
        return None, ""
    text = line_item.rsplit(" | ", 1)[-1].strip()  # "priority | gpt-5, output" → "gpt-5, output"
    head, sep, rest = text.partition(",")
    if not sep or not head.strip():
        return None, text.lower()
    return head.split()[0], rest.strip().lower()


def parse_costs_page(payload: Any) -> tuple[list[tuple[int, list[dict[str, Any]]]], str | None]:
    """Buckets as (start_time, results) and the next page's cursor; SchemaError if off-spec."""
    data, next_page = page_envelope(payload)
    buckets = []
    for bucket in data:
        if not isinstance(bucket, dict) or type(bucket.get("start_time")) is not int:
            raise SchemaError("a bucket lacks start_time")
        results = bucket.get("results", bucket.get("result"))
        if not isinstance(results, list):
            raise SchemaError("a bucket lacks results")
        for result in results:
            _check_result(result)
        buckets.append((bucket["start_time"], results))
    return buckets, next_page


def _check_result(result: Any) -> None:
    if not isinstance(result, dict) or result.get("object") != "organization.costs.result":
        raise SchemaError("a result is not an organization.costs.result")
    amount = result.get("amount")
    value = amount.get("value") if isinstance(amount, dict) else None
    if type(value) not in (int, float) or not math.isfinite(value):
        raise SchemaError("a result's amount.value is missing or not a number")
    currency = amount.get("currency")
    if currency is not None and (not isinstance(currency, str) or currency.lower() != "usd"):
        raise SchemaError(f"a result is in {str(currency)[:8]!r}, not usd")
    if result.get("line_item") is not None and not isinstance(result.get("line_item"), str):
        raise SchemaError("a result's line_item is not a string")


def add_result(bill: Bill, day: date, result: dict[str, Any]) -> None:
    """Fold one costs result into the bill."""
    amount = Decimal(repr(result["amount"]["value"]))
    model, piece = line_item_model(result.get("line_item"))
    if model is None:
        bill.other[day] += amount
        return
    billed = bill.by_model.setdefault((day, model), Billed())
    billed.amount += amount
    tokens = _tokens(result.get("quantity"), result.get("quantity_unit"))
    if tokens is not None:
        billed.counted_tokens = True
        if "output" in piece:
            billed.output_tokens += tokens
        elif "input" in piece:  # input and cached input: the ledger's input counts both
            billed.input_tokens += tokens


def _tokens(quantity: Any, unit: Any) -> int | None:
    if type(quantity) not in (int, float) or not math.isfinite(quantity) or quantity < 0:
        return None
    if unit == "tokens":
        return int(quantity)
    if unit == "1000_tokens":
        return int(quantity * 1000)
    return None


def pull_bill(source: Source, since: date, until: date, *, retry: RetryPolicy | None = None) -> Bill:
    """OpenAI's bill for the UTC days [since, until), from the costs API of an openai_usage source."""
    key = source.api_key()
    if not key:
        raise SourceError(f"{source.api_key_env or 'api_key_env'} is not set: the costs API needs an admin key")
    start = datetime.combine(since, time(0), timezone.utc)
    end = datetime.combine(until, time(0), timezone.utc)
    params: dict[str, Any] = {"start_time": int(start.timestamp()), "end_time": int(end.timestamp()),
                              "bucket_width": "1d", "group_by": ["line_item"], "limit": PAGE_LIMIT}
    url = api_root(source.base_url) + PATH
    bill = Bill()
    with client_for(source, key, retry) as client:
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            buckets, next_page = client.get_json(url, {**params, "page": cursor} if cursor else params,
                                                 parse_costs_page)
            for start_time, results in buckets:
                day = datetime.fromtimestamp(start_time, timezone.utc).date()
                if since <= day < until:
                    for result in results:
                        add_result(bill, day, result)
            if next_page is None:
                return bill
            if next_page == cursor:
                break
            cursor = next_page
    raise SourceError(f"{url}: paging does not end")

