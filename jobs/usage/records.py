"""What a usage record is, wherever it comes from: validating one record's fields, parsing a
pushed or JSONL record, and reading a push body line by line, all or nothing.

A record is the response object an OpenAI-compatible provider returned, as it is:
`id`, `created` (Unix seconds) or `timestamp` (ISO 8601), `model`, and `usage` with
`prompt_tokens`, `completion_tokens` and `prompt_tokens_details.cached_tokens`.
Optional: `mode` (serverless, batch, dedicated), `feature`, `api_key`, `environment`,
`tags` (an object, or "k=v,k2=v2"). Everything else (`choices`, ...) is ignored.

A record's `model` is kept as sent (it keys the bucket); `jobs.usage.costing` resolves it
through the catalog. What a valid value is lives in `jobs.usage.validation`; every way in
(push, import, pull, and the OTLP and LiteLLM receivers) builds its records with `validate()`
here, so all share it. A push is all or nothing: one bad line refuses the whole body, naming
every bad line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from jobs.usage import validation
from jobs.usage.validation import MAX_COUNT, MAX_DEPTH, MAX_LINE_BYTES, RecordError, text_problem

MODES = frozenset({"serverless", "batch", "dedicated"})
HOUR = 3600
MAX_AHEAD = timedelta(days=1)
EARLIEST = int(datetime(2000, 1, 1, tzinfo=timezone.utc).timestamp())
MAX_ERRORS = 100
BOM = b"\xef\xbb\xbf"

LIMITS = {"id": 200, "model": 200, "project": 128, "feature": 128, "api_key": 128, "environment": 64, "tags": 512}

class IngestRejected(Exception):
    """A push or import refused whole: (line number, reason) of the first bad lines, and how many."""

    def __init__(self, errors: list[tuple[int, str]], total: int | None = None) -> None:
        self.errors = errors[:MAX_ERRORS]
        self.total = total if total is not None else len(errors)
        shown = "; ".join(f"line {line}: {reason}" for line, reason in self.errors[:3])
        more = f" (and {self.total - 3} more)" if self.total > 3 else ""
        super().__init__(f"{self.total} bad line(s): {shown}{more}")


@dataclass(slots=True)
class UsageRecord:
    """One validated usage record, reduced to what the ledger keeps (and the line it came from)."""

    event_id: str | None
    hour: int  # start of its hour, Unix seconds
    model: str
    mode: str
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    requests: int
    project: str
    feature: str
    api_key: str
    environment: str
    tags: str
    reported_cost_nanos: int | None = None  # what the sender said it cost (LiteLLM), beside our own cost
    line: int = 0

    def bucket_key(self) -> tuple[Any, ...]:
        return (self.hour, self.model, self.mode, self.project, self.feature, self.api_key, self.environment,
                self.tags)


# -- validating one record ---------------------------------------------------------------


def _text(value: Any, name: str) -> str:
    if type(value) is str and len(value) <= LIMITS[name] and value.isascii() and "\x00" not in value:
        return value  # the common case, without a call
    return "" if value is None else validation.text(value, name, LIMITS[name])


def _tags(value: Any) -> str:
    """Tags as the ledger keeps them: "k=v,k2=v2", sorted by key."""
    if value is None or value == "" or value == {}:
        return ""
    if isinstance(value, str):
        pairs = []
        for part in value.split(","):
            k, sep, v = part.partition("=")
            if not sep or not k.strip():
                raise RecordError(f"tags: expected k=v pairs separated by commas, got {part!r}"[:200])
            pairs.append((k.strip(), v.strip()))
    elif isinstance(value, dict):
        pairs = []
        for k, v in value.items():
            if isinstance(v, bool) or v is None:
                v = str(v).lower() if v is not None else ""
            elif not isinstance(v, (str, int, float)):
                raise RecordError(f"tags: the value of {k!r} must be a string or number"[:200])
            pairs.append((str(k), str(v)))
    else:
        raise RecordError("tags must be an object or a string of k=v pairs")
    for k, v in pairs:
        if not k or any(c in k or c in v for c in ",="):
            raise RecordError(f"tags: keys and values may not contain ',' or '=' ({k}={v})"[:200])
    text = ",".join(f"{k}={v}" for k, v in sorted(dict(pairs).items()))
    problem = text_problem(text, LIMITS["tags"])
    if problem is not None:
        raise RecordError(f"tags {problem.replace('is longer', 'are longer')}")
    return text


def _unix_time(created: Any, timestamp: Any) -> int:
    """Unix seconds from `created` (a number) or `timestamp` (ISO 8601 text)."""
    if created is not None:
        if type(created) is int:
            return created
        if type(created) is float and created == created and abs(created) < 1e11:
            return int(created)
        if type(created) is str:  # a CSV cell: Unix seconds, or ISO 8601 text
            try:
                seconds = float(created)
            except ValueError:
                return _iso(created)
            if seconds == seconds and abs(seconds) < 1e11:
                return int(seconds)
        raise RecordError(f"created must be Unix seconds, not {created!r}"[:200])
    if timestamp is None:
        raise RecordError("no time: give created (Unix seconds) or timestamp (ISO 8601)")
    if type(timestamp) is not str:
        raise RecordError(f"timestamp must be ISO 8601 text such as 2026-11-01T10:00:00Z, not {timestamp!r}"[:200])
    return _iso(timestamp)


def _iso(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise RecordError(f"unknown time format {text[:60]!r}: use ISO 8601 such as 2026-11-01T10:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)  # no offset given: read as UTC
    try:
        return int(moment.timestamp())
    except (OverflowError, OSError, ValueError):
        raise RecordError(f"time {text[:60]!r} is out of range") from None


def validate(
    *,
    event_id: Any,
    created: Any,
    timestamp: Any,
    model: Any,
    prompt_tokens: Any,
    completion_tokens: Any,
    cached_tokens: Any,
    requests: Any,
    mode: Any,
    project: Any,
    feature: Any,
    api_key: Any,
    environment: Any,
    tags: Any,
    latest: int,
) -> UsageRecord:
    """A UsageRecord from raw field values, or RecordError naming the first problem.

    The common case (right types, in range, plain text) takes the inline checks; anything
    else goes through `jobs.usage.validation`, which says what is wrong."""
    if event_id is not None:
        if type(event_id) is not str or not event_id:
            raise RecordError("id must be a non-empty string")
        if len(event_id) > LIMITS["id"] or "\x00" in event_id or not event_id.isascii():
            validation.text(event_id, "id", LIMITS["id"])
    if type(model) is not str or not model.strip():
        raise RecordError("model is missing" if model is None else "model must be a non-empty string")
    if len(model) > LIMITS["model"] or "\x00" in model or not model.isascii():
        validation.text(model, "model", LIMITS["model"])
    when = created if type(created) is int else _unix_time(created, timestamp)
    if when > latest:
        raise RecordError("time is more than a day in the future")
    if when < EARLIEST:
        raise RecordError("time is before 2000 (is it in milliseconds, or not Unix seconds?)")
    input_tokens = (prompt_tokens if type(prompt_tokens) is int and 0 <= prompt_tokens <= MAX_COUNT
                    else validation.count(prompt_tokens, "prompt_tokens"))
    if completion_tokens is None:
        output_tokens = 0
    elif type(completion_tokens) is int and 0 <= completion_tokens <= MAX_COUNT:
        output_tokens = completion_tokens
    else:
        output_tokens = validation.count(completion_tokens, "completion_tokens")
    cached = 0 if cached_tokens is None else validation.count(cached_tokens, "cached_tokens")
    if cached > input_tokens:
        raise RecordError(f"cached_tokens ({cached}) exceed prompt_tokens ({input_tokens})")
    n_requests = 1 if requests is None else validation.count(requests, "requests")
    if mode is None:
        mode = "serverless"
    elif type(mode) is not str or mode not in MODES:
        raise RecordError(f"mode must be serverless, batch or dedicated, not {mode!r}"[:200])
    return UsageRecord(
        event_id,
        when - when % HOUR,
        model.strip(),
        mode,
        input_tokens,
        cached,
        output_tokens,
        n_requests,
        "" if project is None else _text(project, "project"),
        "" if feature is None else _text(feature, "feature"),
        "" if api_key is None else _text(api_key, "api_key"),
        "" if environment is None else _text(environment, "environment"),
        "" if tags is None else _tags(tags),
    )


def parse_record(obj: Any, *, latest: int, project: str | None = None) -> UsageRecord:
    """A pushed or JSONL record (an OpenAI-compatible response object) validated.

    `project` (from the push token) wins over any `project` field in the record."""
    if type(obj) is not dict:
        raise RecordError("expected a JSON object" + (" (got an array; send one object per line)" if type(obj) is list else ""))
    usage = obj.get("usage")
    if type(usage) is not dict:
        raise RecordError("usage is missing" if usage is None else "usage must be an object")
    prompt = usage.get("prompt_tokens")
    if prompt is None:
        prompt = usage.get("input_tokens")
    completion = usage.get("completion_tokens")
    if completion is None:
        completion = usage.get("output_tokens")
    details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details")
    if details is not None and type(details) is not dict:
        raise RecordError("usage.prompt_tokens_details must be an object")
    return validate(
        event_id=obj.get("id"),
        created=obj.get("created"),
        timestamp=obj.get("timestamp"),
        model=obj.get("model"),
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=details.get("cached_tokens") if details else None,
        requests=obj.get("requests"),
        mode=obj.get("mode"),
        project=project if project is not None else obj.get("project"),
        feature=obj.get("feature"),
        api_key=obj.get("api_key"),
        environment=obj.get("environment"),
        tags=obj.get("tags"),
        latest=latest,
    )


def latest_allowed(now: datetime | None = None) -> int:
    """The latest record time accepted (Unix seconds): a day after `now`."""
    return int(((now or datetime.now(timezone.utc)) + MAX_AHEAD).timestamp())


def parse_body(body: bytes, *, project: str, now: datetime | None = None) -> list[UsageRecord]:
    """The records of a push body (one JSON record, perhaps pretty-printed, or NDJSON; a UTF-8
    BOM is allowed); IngestRejected naming every bad line if any is bad."""
    latest = latest_allowed(now)
    body = body.removeprefix(BOM)
    if not body.strip():
        raise IngestRejected([(1, "empty body: send one JSON record, or one record per line (NDJSON)")])
    try:
        text, lossy = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, lossy = body.decode("utf-8", errors="surrogateescape"), True  # bad lines are named below
    lines = text.split("\n")
    if not lossy and len(lines) > 1 and len(body) <= MAX_LINE_BYTES:
        whole = _one_document(text, lines)
        if whole is not None:
            try:
                record = parse_record(whole, latest=latest, project=project)
            except RecordError as exc:
                raise IngestRejected([(1, str(exc))]) from None
            record.line = 1
            return [record]
    records: list[UsageRecord] = []
    errors: list[tuple[int, str]] = []
    for number, line in enumerate(lines, start=1):
        if not line or line.isspace():
            continue
        try:
            obj = scan_line(line, lossy)
            record = parse_record(obj, latest=latest, project=project)
        except (ValueError, RecordError) as exc:
            errors.append((number, str(exc)))
            continue
        record.line = number
        records.append(record)
    if errors:
        raise IngestRejected(errors)
    return records


def _one_document(text: str, lines: list[str]) -> dict[str, Any] | None:
    """A body spread over several lines that is one JSON object (a pretty-printed record);
    None when its first line is a value on its own (NDJSON) or the body is not one object."""
    first = next((line for line in lines if line and not line.isspace()), "")
    try:
        scan_line(first, False)
    except ValueError:
        try:
            whole = validation.json_value(text)
        except RecordError:
            return None
        return whole if type(whole) is dict else None
    return None


_SCAN = json.JSONDecoder().scan_once  # the C scanner, without json.loads' per-call overhead
_LEADING_SPACE = frozenset(" \t\r\ufeff")


def scan_line(line: str, lossy: bool = True) -> Any:
    """The one JSON value on `line`, or ValueError saying why not (in json's own words)."""
    try:
        if line[0] in _LEADING_SPACE:
            line = line.strip()
        if line.count("[") + line.count("{") > MAX_DEPTH:
            validation.json_value(line)  # depth-checked: no RecursionError, a clear reason instead
        obj, end = _SCAN(line, 0)
        if end != len(line) and not line[end:].isspace():
            raise ValueError
        if lossy and any("\udc80" <= c <= "\udcff" for c in line):
            raise ValueError
        return obj
    except RecordError as exc:
        raise ValueError(str(exc)) from None
    except (StopIteration, ValueError, IndexError, RecursionError):
        raise ValueError(_line_reason(line)) from None


def _line_reason(line: str) -> str:
    if any("\udc80" <= c <= "\udcff" for c in line):
        return "not valid UTF-8 text"
    try:
        validation.json_value(line)
    except RecordError as exc:
        return str(exc)
    return "not valid JSON"
