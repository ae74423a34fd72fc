"""What a valid value is, wherever usage comes from (a push, an import, a pull, OTLP, LiteLLM):
one definition of a string, a count, a cost and a JSON document we are willing to parse.

Anything these functions accept, both engines store as given: no lone surrogates or NUL
(PostgreSQL refuses them, SQLite would keep them), nothing longer than its column, no
count or cost a bucket could not hold (see `db.models.MAX_BUCKET_COUNT`). Each refusal is
a `RecordError` whose message says what was wrong in words a user can act on."""

from __future__ import annotations

import json
import re
from typing import Any

from db.models import MAX_BUCKET_COUNT, MAX_BUCKET_NANOS, NANOS_PER_DOLLAR

MAX_COUNT = 10**12
"""Tokens or requests in one record: more is a bug upstream (a bucket holds 1,000 such records)."""
MAX_DEPTH = 64
"""JSON nesting we parse; an OpenAI-compatible response needs about 6 levels."""
MAX_LINE_BYTES = 1 << 20
"""One NDJSON or CSV line (a CSV field is also held to csv's own 128 KB limit)."""
MAX_BUCKET_DOLLARS = MAX_BUCKET_NANOS // NANOS_PER_DOLLAR

__all__ = [
    "MAX_BUCKET_COUNT", "MAX_BUCKET_DOLLARS", "MAX_BUCKET_NANOS", "MAX_COUNT", "MAX_DEPTH", "MAX_LINE_BYTES",
    "RecordError", "bucket_problem", "count", "json_value", "storable", "text", "text_problem", "utf8",
]


class RecordError(ValueError):
    """One record is unusable; the message says why, in words a user can act on."""


def text_problem(value: str, limit: int) -> str | None:
    """Why `value` is not a string we store (None: it is): NUL, a lone surrogate, or too long."""
    if len(value) > limit:
        return f"is longer than {limit} characters"
    if "\x00" in value:
        return "contains a NUL character"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "contains a lone surrogate (not valid Unicode text)"
    return None


_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


def storable(value: str, limit: int) -> str:
    """A name a provider gave (an endpoint's, a job's), cut to `limit` with NUL and lone
    surrogates shown as `?`: kept, where a record of ours with them would be refused."""
    return _UNSTORABLE.sub("?", value[:limit])


def text(value: Any, name: str, limit: int) -> str:
    """`value` if it is a string we store, else RecordError naming `name`."""
    if type(value) is not str:
        raise RecordError(f"{name} must be a string")
    problem = text_problem(value, limit)
    if problem is not None:
        raise RecordError(f"{name} {problem}")
    return value


def count(value: Any, name: str, limit: int = MAX_COUNT) -> int:
    """A whole, non-negative number of tokens or requests up to `limit`; a float that is whole
    counts (JSON writers emit 3000.0); anything else is a RecordError naming `name`."""
    if type(value) is int and 0 <= value <= limit:
        return value
    if value is None:
        raise RecordError(f"{name} is missing")
    if type(value) is float and value.is_integer() and 0 <= value <= limit:
        return int(value)
    if type(value) in (int, float) and value > limit:
        raise RecordError(f"{name} is implausibly large (more than {limit:,})")
    if type(value) in (int, float) and value < 0:
        raise RecordError(f"{name} is negative ({value:g})" if type(value) is float else f"{name} is negative ({value})")
    return _not_a_count(value, name)


def _not_a_count(value: Any, name: str) -> int:
    shown = repr(value)[:40]
    raise RecordError(f"{name} must be a whole number of tokens, not {shown}")


def bucket_problem(counts: dict[str, int], cost_nanos: int | None) -> str | None:
    """Why one bucket's totals could not be stored (None: they can)."""
    for name, value in counts.items():
        if value > MAX_BUCKET_COUNT:
            return f"its {name} would pass {MAX_BUCKET_COUNT:,}, the most one hour bucket holds"
    if cost_nanos is not None and cost_nanos > MAX_BUCKET_NANOS:
        return f"it would cost more than ${MAX_BUCKET_DOLLARS:,} in one hour bucket; check the token counts"
    return None


def utf8(raw: bytes) -> str:
    """`raw` decoded as UTF-8, or RecordError saying where it is not."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(f"not valid UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})") from None


_NESTING = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _too_deep(document: str | bytes) -> bool:
    opens = document.count("[") + document.count("{") if isinstance(document, str) else \
        document.count(b"[") + document.count(b"{")
    if opens <= MAX_DEPTH:  # the common case: cannot be deeper than it has brackets
        return False
    if isinstance(document, bytes):
        document = document.decode("utf-8", errors="replace")
    depth = 0
    for token in _NESTING.finditer(document):
        mark = token.group()
        if mark in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif mark in "]}":
            depth -= 1
    return False


def json_value(document: str | bytes) -> Any:
    """One JSON value, nested at most MAX_DEPTH deep; RecordError (in json's words) if not."""
    if _too_deep(document):
        raise RecordError(f"not valid JSON for a usage record (nested deeper than {MAX_DEPTH} levels)")
    try:
        return json.loads(document)
    except json.JSONDecodeError as exc:
        raise RecordError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    except UnicodeDecodeError:
        raise RecordError("not valid UTF-8 text") from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer of more than 4,300 digits
        raise RecordError(f"not valid JSON ({str(exc)[:80]})") from None
