"""LiteLLM proxy spend logs in: the `StandardLoggingPayload` objects its generic API callback sends.

The proxy (`callback_settings: {budget-guard: {callback_type: generic_api, endpoint: .../v1/litellm,
headers: {Authorization: Bearer TOKEN}}}`) POSTs a JSON array of payloads (`log_format: json_array`,
its default), NDJSON (`ndjson`) or one payload per request (`single`). Each successful call becomes
one usage record:

- `id` is the event id (required: a payload without one refuses the body), counted once;
- `model` (less a `custom_llm_provider/` prefix), `prompt_tokens`, `completion_tokens`, cached input
  from `response.usage.prompt_tokens_details.cached_tokens`, the time from `endTime`;
- project: the key's team (`metadata.user_api_key_team_alias`, else `user_api_key_team_id`), else the
  ingest token's project; API key: `metadata.user_api_key_alias`, else `user_api_key_hash`;
  feature and environment: `metadata.spend_logs_metadata.feature` / `.environment`;
- tags: `request_tags`, a tag `k:v` (or `k=v`) kept as k=v and a plain tag `x` as x=x;
- mode batch for LiteLLM's batch calls (`call_type` naming a batch), else serverless;
- `response_cost`, LiteLLM's own price of the call, kept beside ours for `budget-guard reconcile`.

Failed calls (`status: failure`) and LiteLLM cache hits (no provider call, no provider bill) are
skipped. Any unusable payload refuses the whole body (422, each bad entry named).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from db.models import to_nanos
from jobs.usage.providers import ModelNames, model_names, provider_of
from jobs.usage.records import LIMITS, IngestRejected, UsageRecord, latest_allowed, scan_line, validate
from jobs.usage.validation import RecordError
from pricing.catalog import Catalog

MAX_COST = Decimal(1_000_000)  # dollars for one call; more is a bug upstream


@dataclass
class ParsedSpend:
    """The records of one LiteLLM body, and how many payloads were skipped (failures, cache hits)."""

    records: list[UsageRecord] = field(default_factory=list)
    skipped: int = 0


def parse_spend_logs(body: bytes, *, catalog: Catalog, project: str, now: datetime | None = None) -> ParsedSpend:
    """The usage records of a LiteLLM body; IngestRejected (entry number, reason) if any payload is bad."""
    now = now or datetime.now(timezone.utc)
    latest = latest_allowed(now)
    names = model_names(catalog, now.date())
    parsed = ParsedSpend()
    errors: list[tuple[int, str]] = []
    for number, payload in _payloads(body):
        try:
            record = _record(payload, names, project, latest)
        except RecordError as exc:
            errors.append((number, str(exc)))
            continue
        if record is None:
            parsed.skipped += 1
        else:
            record.line = number  # a refusal at write time (a full bucket) names the entry
            parsed.records.append(record)
    if errors:
        raise IngestRejected(errors)
    return parsed


def _payloads(body: bytes) -> list[tuple[int, Any]]:
    """(entry number, payload): a JSON array, one object, or NDJSON (numbered by line)."""
    if not body.strip():
        raise IngestRejected([(1, "empty body: LiteLLM sends a JSON array of StandardLoggingPayload objects")])
    try:
        whole = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # read line by line, which names each problem
        whole = None
    else:
        if type(whole) is list:
            return list(enumerate(whole, start=1))
        return [(1, whole)]
    entries: list[tuple[int, Any]] = []
    errors: list[tuple[int, str]] = []
    text = body.decode("utf-8", errors="surrogateescape")
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            entries.append((number, scan_line(line)))
        except ValueError as exc:
            errors.append((number, str(exc)))
    if errors:
        raise IngestRejected(errors)
    return entries


def _record(payload: Any, names: ModelNames, token_project: str, latest: int) -> UsageRecord | None:
    if type(payload) is not dict:
        raise RecordError("expected a JSON object (a LiteLLM StandardLoggingPayload)")
    event_id = payload.get("id")
    if type(event_id) is not str or not event_id.strip():
        raise RecordError("id is missing: every StandardLoggingPayload carries one, and it is what makes a "
                          "re-sent log count once")
    if len(event_id) > LIMITS["id"] - len("litellm:"):
        raise RecordError(f"id is longer than {LIMITS['id'] - len('litellm:')} characters")
    if payload.get("status") == "failure" or payload.get("cache_hit") is True:
        return None
    metadata = _object(payload.get("metadata"), "metadata")
    spend_metadata = _object(metadata.get("spend_logs_metadata"), "metadata.spend_logs_metadata")
    model = payload.get("model")
    provider_name = payload.get("custom_llm_provider")
    provider_name = provider_name if type(provider_name) is str else None
    if type(model) is str and provider_name and model.startswith(provider_name + "/"):
        model = model[len(provider_name) + 1:]
    provider = provider_of(provider_name)
    end = payload.get("endTime")
    record = validate(
        event_id=f"litellm:{event_id}",
        created=end if type(end) in (int, float) else None,
        timestamp=end if type(end) is str else None,
        model=names(provider, model.strip()) if type(model) is str and model.strip() else model,
        prompt_tokens=payload.get("prompt_tokens"),
        completion_tokens=payload.get("completion_tokens"),
        cached_tokens=_cached_tokens(payload.get("response")),
        requests=None,
        mode="batch" if "batch" in str(payload.get("call_type") or "") else None,
        project=_clip(metadata.get("user_api_key_team_alias") or metadata.get("user_api_key_team_id"), "project")
        or token_project,
        feature=_clip(spend_metadata.get("feature"), "feature"),
        api_key=_clip(metadata.get("user_api_key_alias") or metadata.get("user_api_key_hash"), "api_key"),
        environment=_clip(spend_metadata.get("environment"), "environment"),
        tags=_tags(payload.get("request_tags")),
        latest=latest,
    )
    record.reported_cost_nanos = _reported_cost(payload.get("response_cost"))
    return record


def _object(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if type(value) is not dict:
        raise RecordError(f"{name} must be an object")
    return value


def _clip(value: Any, name: str) -> str | None:
    """A dimension LiteLLM's admin named: text, cut to what the ledger keeps (never a refusal)."""
    if type(value) is not str or not value.strip():
        return None
    return value.strip()[:LIMITS[name]]


def _cached_tokens(response: Any) -> Any:
    usage = response.get("usage") if type(response) is dict else None
    details = usage.get("prompt_tokens_details") if type(usage) is dict else None
    return details.get("cached_tokens") if type(details) is dict else None


def _tags(value: Any) -> dict[str, str] | None:
    """request_tags as k=v pairs; characters the ledger's tag text cannot hold become `_`, and tags
    past its 512 characters are left out (a tag must not cost the call its record)."""
    if value is None:
        return None
    if type(value) is not list:
        raise RecordError("request_tags must be a list of strings")
    pairs: dict[str, str] = {}
    for tag in value:
        if type(tag) is not str or not tag.strip():
            continue
        sep = ":" if ":" in tag else "=" if "=" in tag else None
        key, _, val = tag.partition(sep) if sep else (tag, "", tag)
        key, val = _tag_text(key), _tag_text(val)
        if key:
            pairs[key] = val
    kept: dict[str, str] = {}
    size = 0
    for key in sorted(pairs):
        size += len(key) + len(pairs[key]) + 2
        if size > LIMITS["tags"]:
            break
        kept[key] = pairs[key]
    return kept or None


def _tag_text(text: str) -> str:
    return text.strip().replace(",", "_").replace("=", "_")


def _reported_cost(value: Any) -> int | None:
    """LiteLLM's response_cost (USD) in nano-dollars; None when it sent none."""
    if value is None:
        return None
    if type(value) not in (int, float) or (type(value) is float and not math.isfinite(value)):
        raise RecordError(f"response_cost must be a number of dollars, not {value!r}"[:200])
    try:
        cost = Decimal(repr(value))
    except InvalidOperation:
        raise RecordError(f"response_cost must be a number of dollars, not {value!r}"[:200]) from None
    if cost < 0:
        raise RecordError(f"response_cost is negative ({value})")
    if cost > MAX_COST:
        raise RecordError(f"response_cost is implausibly large (more than ${MAX_COST:,} for one call)")
    return to_nanos(cost)
