"""Recorded usage into the ledger: parse and validate pushed or imported records, cost them
at the price in effect at their time, bucket them by the hour, and count each event id once.

A record is the response object an OpenAI-compatible provider returned, as it is:
`id`, `created` (Unix seconds) or `timestamp` (ISO 8601), `model`, and `usage` with
`prompt_tokens`, `completion_tokens` and `prompt_tokens_details.cached_tokens`.
Optional: `mode` (serverless, batch, dedicated), `feature`, `api_key`, `environment`,
`tags` (an object, or "k=v,k2=v2"). Everything else (`choices`, ...) is ignored.

A record's `model` is kept as sent (it keys the bucket) and resolved through the catalog as
quotes and budgets resolve names (`llama-3.3-70b`, `gpt-4o`, an `[[aliases]]` name); the
bucket stores the catalog model it resolved to, which totals, rollups and budgets count it
under. A name nothing matches stays unpriced under its own name; `reprice` resolves again.

What a valid value is lives in `jobs.usage.validation`; every way in (push, import, pull, and the
OTLP and LiteLLM receivers) builds its records with `validate()` here, so all share it.
A push is all or nothing: one bad line refuses the whole body, naming every bad line.
An import checks the whole file first, then applies it in one transaction.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any, Literal, TextIO

from sqlalchemy.orm import Session, sessionmaker

from db.bulk import DirectWriter, LedgerWriter, bulk_writer
from db.engine import transaction
from db.ledger import BucketFull, BucketRow
from db.models import MAX_BUCKET_NANOS, to_nanos
from db.prices import price_record_id
from jobs.usage import validation
from jobs.usage.validation import MAX_COUNT, MAX_DEPTH, MAX_LINE_BYTES, RecordError, text_problem
from pricing.catalog import Catalog, Price
from pricing.costs import token_cost

__all__ = [
    "CSV_FIELDS", "Costing", "FileReader", "IngestRejected", "IngestResult", "MAX_COUNT", "PriceLookup",
    "RecordError", "UsageRecord", "apply_records", "bucket_records", "check_costs", "file_format", "import_file",
    "ingest_body", "latest_allowed", "parse_body", "parse_record", "price_lookup", "scan_line",
    "validate",
]

MODES = frozenset({"serverless", "batch", "dedicated"})
HOUR = 3600
MAX_AHEAD = timedelta(days=1)
EARLIEST = int(datetime(2000, 1, 1, tzinfo=timezone.utc).timestamp())
MAX_ERRORS = 100
BOM = b"\xef\xbb\xbf"

LIMITS = {"id": 200, "model": 200, "project": 128, "feature": 128, "api_key": 128, "environment": 64, "tags": 512}
CSV_FIELDS = (
    "id", "created", "timestamp", "model", "prompt_tokens", "completion_tokens", "cached_tokens", "requests",
    "mode", "project", "feature", "api_key", "environment", "tags",
)
CSV_ALIASES = {
    "prompt_tokens": ("input_tokens",),
    "completion_tokens": ("output_tokens",),
    "cached_tokens": ("cached_input_tokens",),
}

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


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


@dataclass(frozen=True)
class IngestResult:
    """What a push or import did: records counted, and records skipped as already counted."""

    accepted: int
    duplicates: int
    bad: int = 0


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


def check_costs(records: list[UsageRecord], catalog: Catalog) -> None:
    """IngestRejected if any hour bucket of `records` alone would cost more than a bucket may hold.

    Cheap first: tokens times the highest rate of each record's price, summed over all
    records, is almost always far below the limit; only when it is not are buckets costed."""
    lookup = price_lookup(catalog)
    ceilings: dict[tuple[str, str, int], int] = {}
    bound = 0
    for r in records:
        key = (r.model, r.mode, r.hour // 86400)
        ceiling = ceilings.get(key)
        if ceiling is None:
            price = lookup(r.model, r.mode, (_EPOCH + timedelta(seconds=r.hour)).date()) if r.mode != "dedicated" else None
            ceiling = ceilings[key] = _nanos_per_token(price)
        bound += (r.input_tokens + r.output_tokens) * ceiling
    if bound <= MAX_BUCKET_NANOS:
        return
    full = []
    for row in bucket_records(records):
        price = lookup(row.model, row.mode, row.bucket_start.date()) if row.mode != "dedicated" else None
        if price is not None:
            cost = to_nanos(token_cost(price, row.input_tokens, row.output_tokens, row.cached_input_tokens))
            if cost > MAX_BUCKET_NANOS:
                row.cost_nanos = cost
                full.append(row)
    if full:
        raise _bucket_refusal(records, full)


def _nanos_per_token(price: Price | None) -> int:
    if price is None:
        return 0
    highest = max(price.input, price.output, price.cached_input or Decimal(0))
    return int((highest * 1000).to_integral_value(rounding=ROUND_CEILING))  # $/1M tokens -> nano-$/token


def _bucket_refusal(records: Iterable[UsageRecord], full: list[BucketRow]) -> IngestRejected:
    """IngestRejected naming, for each bucket that would overflow, the first line that went into it."""
    keys = {(int(r.bucket_start.timestamp()), r.model, r.mode, r.project, r.feature, r.api_key, r.environment,
             r.tags): r for r in full}
    errors: dict[tuple[Any, ...], tuple[int, str]] = {}
    for record in records:
        key = record.bucket_key()
        if key in keys and key not in errors:
            row = keys[key]
            where = f"{row.model} at {row.bucket_start:%Y-%m-%d %H}:00 UTC" + (f", project {row.project}" if row.project else "")
            problem = validation.bucket_problem(
                {"tokens": max(row.input_tokens, row.output_tokens), "requests": row.requests}, row.cost_nanos
            ) or (f"its bucket would pass what one hour bucket holds (${validation.MAX_BUCKET_DOLLARS:,} "
                  f"or {validation.MAX_BUCKET_COUNT:,} tokens) with what the ledger has already")
            errors[key] = (record.line, f"the bucket of {where}: {problem}")
    return IngestRejected(sorted(errors.values()) or [(0, "a bucket would pass what one bucket holds")])


# -- costing and bucketing -----------------------------------------------------------------


class PriceLookup:
    """`Catalog.usage_price` remembered per (model, mode, day) for one catalog; shared by every ingest
    that uses the same catalog object, so a push does not search the catalog again."""

    MAX_ENTRIES = 100_000

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._memo: dict[tuple[str, str, date], Price | None] = {}

    def __call__(self, model: str, mode: str, day: date) -> Price | None:
        key = (model, mode, day)
        try:
            return self._memo[key]
        except KeyError:
            if len(self._memo) >= self.MAX_ENTRIES:
                self._memo.clear()
            price = self._memo[key] = self.catalog.usage_price(model, mode, day)
            return price


_shared_lookup: PriceLookup | None = None


def price_lookup(catalog: Catalog) -> PriceLookup:
    """The shared lookup for `catalog` (a new one when the catalog was rebuilt)."""
    global _shared_lookup
    lookup = _shared_lookup
    if lookup is None or lookup.catalog is not catalog:
        lookup = _shared_lookup = PriceLookup(catalog)
    return lookup


class Costing:
    """Costs buckets at the price in effect at their time, and records which price it used and
    which catalog model the bucket's name resolved to.

    Price-row ids are cached for the life of one transaction (an ingest, a pull page, a reprice)."""

    def __init__(self, catalog: Catalog, session: Session) -> None:
        self.catalog = catalog
        self.session = session
        self._lookup = price_lookup(catalog)
        self._found: dict[tuple[str, str, date], tuple[Price | None, int | None]] = {}
        self._ids: dict[tuple[Price, str], int] = {}

    def price(self, model: str, mode: str, at: datetime) -> tuple[Price | None, int | None]:
        """The price for usage at `at`, and the id of its `prices` row (both None: unpriced)."""
        key = (model, mode, at.date())
        found = self._found.get(key)
        if found is None:
            price = self._lookup(*key)
            found = self._found[key] = (price, self.price_id(price, mode) if price is not None else None)
        return found

    def price_id(self, price: Price, mode: str) -> int:
        key = (price, mode)
        if key not in self._ids:
            self._ids[key] = price_record_id(self.session, price, mode)
        return self._ids[key]

    def catalog_model(self, model: str) -> str | None:
        """The catalog's name for `model` (None: nothing matches); the catalog remembers it."""
        match = self.catalog.match(model)
        return match.label if match is not None else None

    def cost(self, row: BucketRow) -> BucketRow:
        """Set `row`'s catalog model, cost and price from its name and tokens; dedicated token
        rows cost nothing per token."""
        row.catalog_model = self.catalog_model(row.model)
        if row.mode == "dedicated":
            row.cost_nanos, row.price_id = 0, None
            return row
        price, price_id = self.price(row.model, row.mode, row.bucket_start)
        if price is None:
            row.cost_nanos, row.price_id = None, None
        else:
            cost = token_cost(price, row.input_tokens, row.output_tokens, row.cached_input_tokens)
            row.cost_nanos, row.price_id = to_nanos(cost), price_id
        return row


def bucket_records(records: Iterable[UsageRecord]) -> list[BucketRow]:
    """Hour buckets summing the records (not yet costed)."""
    sums: dict[tuple[Any, ...], list[Any]] = {}
    for r in records:
        key = (r.hour, r.model, r.mode, r.project, r.feature, r.api_key, r.environment, r.tags)
        acc = sums.get(key)
        if acc is None:
            sums[key] = [r.input_tokens, r.cached_input_tokens, r.output_tokens, r.requests, r.reported_cost_nanos]
        else:
            acc[0] += r.input_tokens
            acc[1] += r.cached_input_tokens
            acc[2] += r.output_tokens
            acc[3] += r.requests
            if acc[4] is not None:
                acc[4] = None if r.reported_cost_nanos is None else acc[4] + r.reported_cost_nanos
    hours: dict[int, datetime] = {}
    rows = []
    for (hour, model, mode, project, feature, api_key, environment, tags), (tin, tcached, tout, n, reported) in sums.items():
        start = hours.get(hour)
        if start is None:
            start = hours[hour] = _EPOCH + timedelta(seconds=hour)
        rows.append(
            BucketRow(
                bucket_start=start, width="1h", model=model, mode=mode, project=project, feature=feature,
                api_key=api_key, environment=environment, tags=tags, input_tokens=tin, cached_input_tokens=tcached,
                output_tokens=tout, requests=n, reported_cost_nanos=reported,
            )
        )
    return rows


def apply_records(
    session: Session, catalog: Catalog, records: list[UsageRecord], *, source: str, now: datetime,
    writer: LedgerWriter | None = None,
) -> IngestResult:
    """Count each event id once (within `records` and against the ledger), then add the rest
    (through `writer`, an import's bulk writer; by default straight into the ledger)."""
    writer = writer or DirectWriter(session, source)
    first: dict[str, UsageRecord] = {}
    anonymous: list[UsageRecord] = []
    for record in records:
        if record.event_id is None:
            anonymous.append(record)
        elif record.event_id not in first:
            first[record.event_id] = record
    fresh = writer.claim_event_ids(first.keys(), now)
    counted = anonymous + [record for event_id, record in first.items() if event_id in fresh]
    costing = Costing(catalog, session)
    try:
        writer.add_buckets([costing.cost(row) for row in bucket_records(counted)])
    except BucketFull as full:  # the caller's transaction rolls back: nothing of these records stays
        raise _bucket_refusal(counted, full.rows) from None
    return IngestResult(accepted=len(counted), duplicates=len(records) - len(counted))


def ingest_body(
    sessions: sessionmaker[Session],
    catalog: Catalog,
    body: bytes,
    *,
    project: str,
    source: str = "push",
    now: datetime | None = None,
) -> IngestResult:
    """Apply a push body (one JSON record or NDJSON) for `project`, all or nothing.

    Raises IngestRejected naming each bad line before anything is written."""
    now = now or datetime.now(timezone.utc)
    records = parse_body(body, project=project, now=now)
    check_costs(records, catalog)
    with transaction(sessions) as session:
        return apply_records(session, catalog, records, source=source, now=now)


# -- import from files -----------------------------------------------------------------------

Format = Literal["csv", "jsonl"]
Progress = Callable[[str, int, int], None]
"""Called as (phase, bytes done, bytes total); phase is "checking" or "importing"."""


@dataclass
class _Line:
    number: int
    raw: str
    record: UsageRecord | None = None
    error: str | None = None


@dataclass
class FileReader:
    """Streams a CSV or JSONL file as validated lines, one at a time, never the whole file.

    Everything that could refuse a line is found here, in the checking pass: bytes that are
    not UTF-8 (named by line, never read as U+FFFD), lines over MAX_LINE_BYTES, CSV fields
    over csv's 128 KB limit, JSON nested too deep, and every rule of `validate()`."""

    path: Path
    fmt: Format
    latest: int
    columns: Mapping[str, str] = field(default_factory=dict)
    project: str | None = None
    bytes_read: int = 0
    header: str = ""

    def lines(self) -> Iterator[_Line]:
        self.bytes_read = 0
        with self.path.open("rb") as handle:
            if self.fmt == "jsonl":
                yield from self._jsonl(handle)
            else:
                yield from self._csv(handle)

    def _physical(self, handle: io.BufferedReader) -> Iterator[tuple[int, str, str | None]]:
        """(line number, text, problem) per physical line: the text is decoded with
        surrogateescape (so a bad line can be written back byte for byte), the problem
        says why the line is unusable (None: it is fine)."""
        number = 0
        while True:
            chunk = handle.readline(MAX_LINE_BYTES + 1)
            if not chunk:
                return
            number += 1
            self.bytes_read += len(chunk)
            if number == 1:
                chunk = chunk.removeprefix(BOM)
            problem = None
            if len(chunk) > MAX_LINE_BYTES and not chunk.endswith(b"\n"):
                while chunk and not chunk.endswith(b"\n"):  # skip the rest of it, holding none of it
                    chunk = handle.readline(1 << 16)
                    self.bytes_read += len(chunk)
                yield number, "\n", f"the line is longer than {MAX_LINE_BYTES:,} bytes"
                continue
            try:
                text = chunk.decode("utf-8")
            except UnicodeDecodeError as exc:
                text = chunk.decode("utf-8", errors="surrogateescape")
                problem = f"not valid UTF-8 text (byte 0x{chunk[exc.start]:02x} at column {exc.start + 1})"
            yield number, text, problem

    def _jsonl(self, handle: io.BufferedReader) -> Iterator[_Line]:
        for number, text, problem in self._physical(handle):
            if problem is None and (not text or text.isspace()):
                continue
            line = _Line(number, text)
            if problem is not None:
                line.error = problem
            else:
                try:
                    line.record = parse_record(scan_line(text.rstrip("\r\n"), False), latest=self.latest,
                                               project=self.project)
                    line.record.line = number
                except (ValueError, RecordError) as exc:
                    line.error = str(exc)
            yield line

    def _csv(self, handle: io.BufferedReader) -> Iterator[_Line]:
        raw: list[str] = []
        problems: list[tuple[int, str]] = []
        last = [0]

        def feed() -> Iterator[str]:
            for number, text, problem in self._physical(handle):
                last[0] = number
                raw.append(text)
                if problem is not None:
                    problems.append((number, problem))
                yield text

        reader = csv.reader(feed())
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise IngestRejected([(1, f"the header is not readable CSV ({exc})")]) from None
        if problems:
            raise IngestRejected([(1, f"the header: {problems[0][1]}")])
        self.header = "".join(raw)
        raw.clear()
        index = self._column_index([h.strip() for h in header])
        start = 2
        while True:
            error = None
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                row, error = [], f"not readable CSV ({exc})"
            line = _Line(start, "".join(raw))
            raw.clear()
            start = last[0] + 1
            if problems:
                line.number, error = problems[0]
                problems.clear()
            if error is not None:
                line.error = error
            elif not row or (len(row) == 1 and not row[0].strip()):
                continue
            else:
                try:
                    line.record = self._csv_record(row, index)
                    line.record.line = line.number
                except RecordError as exc:
                    line.error = str(exc)
            yield line

    def _column_index(self, header: list[str]) -> dict[str, int]:
        """Which CSV column holds each field: the mapping first, then the field's own name or alias."""
        positions = {name: i for i, name in enumerate(header)}
        index: dict[str, int] = {}
        for name in CSV_FIELDS:
            if name in self.columns:
                column = self.columns[name]
                if column not in positions:
                    raise IngestRejected([(1, f"the mapping names column {column!r} for {name}, but the header lacks it")])
                index[name] = positions[column]
                continue
            for candidate in (name, *CSV_ALIASES.get(name, ())):
                if candidate in positions:
                    index[name] = positions[candidate]
                    break
        missing = [name for name in ("model", "prompt_tokens") if name not in index]
        if "created" not in index and "timestamp" not in index:
            missing.append("created or timestamp")
        if missing:
            raise IngestRejected(
                [(1, f"the header has no column for {', '.join(missing)} (map one with --map FIELD=COLUMN)")]
            )
        return index

    def _csv_record(self, row: list[str], index: dict[str, int]) -> UsageRecord:
        n = len(row)
        cells = [row[index[name]].strip() if name in index and index[name] < n else "" for name in CSV_FIELDS]
        (event_id, created, timestamp, model, prompt, completion, cached, requests, mode, project, feature,
         api_key, environment, tags) = [cell or None for cell in cells]
        counts = []
        for name, text in (("prompt_tokens", prompt), ("completion_tokens", completion), ("cached_tokens", cached),
                           ("requests", requests)):
            if text is None:
                counts.append(None)
                continue
            try:
                counts.append(int(text))  # validate() says if it is negative or too large
            except ValueError:
                if text.lstrip("+-").isdigit():  # more digits than int() reads
                    raise RecordError(f"{name} is implausibly large (more than {MAX_COUNT:,})") from None
                raise RecordError(f"{name} must be a whole number, not {text[:40]!r}") from None
        if created is not None and created.isdigit() and created.isascii() and len(created) <= 12:
            created = int(created)
        return validate(
            event_id=event_id,
            created=created,
            timestamp=timestamp,
            model=model,
            prompt_tokens=counts[0],
            completion_tokens=counts[1],
            cached_tokens=counts[2],
            requests=counts[3],
            mode=mode,
            project=self.project if self.project is not None else project,
            feature=feature,
            api_key=api_key,
            environment=environment,
            tags=tags,
            latest=self.latest,
        )


def file_format(path: Path, fmt: str | None = None) -> Format:
    """csv or jsonl, from `fmt` or the file's extension."""
    name = (fmt or path.suffix.lstrip(".")).lower()
    if name in ("jsonl", "ndjson", "json"):
        return "jsonl"
    if name == "csv":
        return "csv"
    raise ValueError(f"cannot tell the format of {path.name}; pass --format csv or --format jsonl")


def import_file(
    sessions: sessionmaker[Session],
    catalog: Catalog,
    path: Path,
    *,
    fmt: str | None = None,
    columns: Mapping[str, str] | None = None,
    project: str | None = None,
    skip_bad: Path | None = None,
    source: str = "import",
    chunk_lines: int = 50_000,
    on_progress: Progress | None = None,
    now: datetime | None = None,
) -> IngestResult:
    """Import a CSV or JSONL file, streaming it twice: first check every line, then apply.

    Bad lines refuse the file before anything is applied (IngestRejected), unless
    `skip_bad` names a file to write them to; then the good lines are applied. The apply
    pass is one transaction (chunks of `chunk_lines` are written inside it), so an import
    is all or nothing: a bucket that would overflow, a crash or a lost database leaves
    nothing of the file behind, and running it again is safe."""
    now = now or datetime.now(timezone.utc)
    reader = FileReader(path, file_format(path, fmt), latest_allowed(now), dict(columns or {}), project)
    total_bytes = path.stat().st_size
    report = on_progress or (lambda phase, done, total: None)

    errors: list[tuple[int, str]] = []
    bad = 0
    bad_out: TextIO | None = (
        skip_bad.open("w", encoding="utf-8", errors="surrogateescape", newline="") if skip_bad else None
    )
    try:
        for n, line in enumerate(reader.lines()):
            if line.error is not None:
                bad += 1
                if len(errors) < MAX_ERRORS:
                    errors.append((line.number, line.error))
                if bad_out is not None:
                    if bad == 1 and reader.header:
                        bad_out.write(reader.header)
                    bad_out.write(line.raw if line.raw.endswith("\n") else line.raw + "\n")
            if n % 10_000 == 0:
                report("checking", reader.bytes_read, total_bytes)
        report("checking", total_bytes, total_bytes)
    finally:
        if bad_out is not None:
            bad_out.close()
    if bad and skip_bad is None:
        raise IngestRejected(errors, bad)

    accepted = duplicates = 0
    chunk: list[UsageRecord] = []
    with transaction(sessions) as session:
        writer = bulk_writer(session, source)
        for line in reader.lines():
            if line.record is None:
                if skip_bad is None:  # it passed the check: the file changed since
                    raise IngestRejected([(line.number, f"{line.error} (the file changed during the import)")])
                continue
            chunk.append(line.record)
            if len(chunk) >= chunk_lines:
                result = apply_records(session, catalog, chunk, source=source, now=now, writer=writer)
                accepted, duplicates = accepted + result.accepted, duplicates + result.duplicates
                chunk = []
                report("importing", reader.bytes_read, total_bytes)
        if chunk:
            result = apply_records(session, catalog, chunk, source=source, now=now, writer=writer)
            accepted, duplicates = accepted + result.accepted, duplicates + result.duplicates
        try:
            writer.finish()
        except BucketFull as full:  # named by the first line of each such bucket, read again
            raise _bucket_refusal((line.record for line in reader.lines() if line.record), full.rows) from None
    report("importing", total_bytes, total_bytes)
    return IngestResult(accepted=accepted, duplicates=duplicates, bad=bad)
