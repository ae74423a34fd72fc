"""HTTP for usage sources: timeouts, and retries with backoff on 429, 5xx, timeouts, garbage
and wrong schemas, honouring `Retry-After`, inside a bounded total wait. Large bodies (batch
output files) are streamed line by line, never held whole."""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx

from jobs.config.redaction import redact_untrusted

T = TypeVar("T")
CHUNK_BYTES = 1 << 16
MAX_LINE_BYTES = 8 << 20  # one line of a streamed body; a longer one is not a line we can read
REASON_CHARS = 120


class SourceError(Exception):
    """A source could not be read; the message is one line saying why."""


class SchemaError(SourceError):
    """A source answered JSON that is not the shape its spec promises."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: attempts per request, backoff, and the most time spent waiting in all.

    `sleep` is injectable so tests do not wait."""

    attempts: int = 4
    base_delay: float = 1.0
    max_delay: float = 30.0
    max_total_wait: float = 60.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter for the given (0-based) failed attempt."""
        return min(self.max_delay, self.base_delay * 2**attempt) * random.uniform(0.5, 1.0)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0.0, (moment - (now or datetime.now(timezone.utc))).total_seconds())


class _Retryable(Exception):
    def __init__(self, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait


class SourceClient:
    """GETs JSON from one source with a bearer key, parsing it with a schema check that may retry."""

    def __init__(
        self,
        *,
        timeout: float,
        bearer: str | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Accept": "application/json", "User-Agent": "budget-guard"}
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        self.retry = retry or RetryPolicy()
        self._client = httpx.Client(timeout=httpx.Timeout(timeout), headers=headers, transport=transport)

    def __enter__(self) -> "SourceClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def get_json(self, url: str, params: Mapping[str, Any] | None, parse: Callable[[Any], T]) -> T:
        """GET `url` and return `parse(json)`; retry what may pass, raise SourceError otherwise."""
        return self._retrying(url, lambda: self._attempt(url, params, parse))

    def stream_lines(self, url: str, consume: Callable[[Iterator[bytes | None]], T], *,
                     max_line_bytes: int = MAX_LINE_BYTES) -> T:
        """GET `url` and return `consume(lines)`, the body's lines (without their newline) as they
        arrive; a line longer than `max_line_bytes` comes as None and is never held whole.

        A failure mid-body (timeout, dropped connection) is retried like any other, and a new
        attempt calls `consume` again from the first line: it must start from nothing each time."""
        return self._retrying(url, lambda: self._stream_attempt(url, consume, max_line_bytes))

    def _retrying(self, url: str, attempt_once: Callable[[], T]) -> T:
        waited = 0.0
        last = ""
        for attempt in range(self.retry.attempts):
            try:
                return attempt_once()
            except _Retryable as exc:
                last = str(exc)
                if attempt + 1 >= self.retry.attempts:
                    break
                delay = exc.wait if exc.wait is not None else self.retry.backoff(attempt)
                if waited + delay > self.retry.max_total_wait:
                    last += f"; would wait {delay:.0f}s more, past the {self.retry.max_total_wait:.0f}s budget"
                    break
                self.retry.sleep(delay)
                waited += delay
        raise SourceError(f"{_where(url)}: gave up after {attempt + 1} attempt(s): {last}")

    def _attempt(self, url: str, params: Mapping[str, Any] | None, parse: Callable[[Any], T]) -> T:
        try:
            response = self._client.get(url, params=params)
        except httpx.TimeoutException:
            raise _Retryable("timed out") from None
        except httpx.TransportError as exc:
            raise _Retryable(f"connection failed ({type(exc).__name__})") from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Retryable(f"HTTP {status}{_detail(response)}", retry_after_seconds(response.headers.get("Retry-After")))
        if status >= 400:
            raise SourceError(f"{_where(url)}: HTTP {status}{_detail(response)}")
        try:
            payload = json.loads(response.content)
        except (ValueError, RecursionError):  # RecursionError: nested past any sane depth
            raise _Retryable(f"answered something that is not JSON ({response.headers.get('content-type', '?')})") from None
        try:
            return parse(payload)
        except SchemaError as exc:
            raise _Retryable(f"unexpected answer: {exc}") from None

    def _stream_attempt(self, url: str, consume: Callable[[Iterator[bytes | None]], T], max_line_bytes: int) -> T:
        try:
            with self._client.stream("GET", url, headers={"Accept": "*/*"}) as response:
                status = response.status_code
                if status >= 400:
                    detail = provider_reason(_head(response))
                    if status == 429 or status >= 500:
                        raise _Retryable(f"HTTP {status}{detail}", retry_after_seconds(response.headers.get("Retry-After")))
                    raise SourceError(f"{_where(url)}: HTTP {status}{detail}")
                return consume(split_lines(response.iter_bytes(CHUNK_BYTES), max_line_bytes))
        except httpx.TimeoutException:
            raise _Retryable("timed out") from None
        except httpx.TransportError as exc:  # includes a body cut short (RemoteProtocolError)
            raise _Retryable(f"connection failed ({type(exc).__name__})") from None


def split_lines(chunks: Iterable[bytes], max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[bytes | None]:
    """The lines of a byte stream, without their newline (and a trailing CR); None for each line
    longer than `max_line_bytes`, whose bytes are dropped as they arrive."""
    pending = b""
    overlong = False
    for chunk in chunks:
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                break
            if overlong:
                overlong = False
                yield None
            else:
                line = pending + chunk[start:end] if pending else chunk[start:end]
                pending = b""
                if len(line) > max_line_bytes:
                    yield None
                else:
                    yield line[:-1] if line.endswith(b"\r") else line
            start = end + 1
        if not overlong:
            pending = pending + chunk[start:] if pending else chunk[start:]
            if len(pending) > max_line_bytes:
                pending, overlong = b"", True
    if overlong:
        yield None
    elif pending:
        yield pending[:-1] if pending.endswith(b"\r") else pending


def _where(url: str) -> str:
    parsed = httpx.URL(url)
    port = f":{parsed.port}" if parsed.port else ""
    return f"GET {parsed.host}{port}{parsed.path}"


def _detail(response: httpx.Response) -> str:
    """The provider's reason, if its body gives one (see `provider_reason`)."""
    return provider_reason(response.content)


def provider_reason(body: bytes) -> str:
    """A provider's reason for an error, if its body gives one, as " (code: first sentence)":
    short and redacted. The body itself is never passed on (it may echo our key)."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError, RecursionError):
        return ""
    if isinstance(error, dict):
        code, message = error.get("code") or error.get("type"), error.get("message")
    else:
        code, message = None, error
    parts = []
    if isinstance(code, str) and re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", code):
        parts.append(code)
    if isinstance(message, str) and message.strip():
        # Redact the whole message first: a cut could leave half a key that no pattern knows.
        first = re.split(r"(?<=[.!?])\s|\n", redact_untrusted(message.strip()), maxsplit=1)[0]
        parts.append(first[:REASON_CHARS] + ("…" if len(first) > REASON_CHARS else ""))
    return f" ({redact_untrusted(': '.join(parts))})" if parts else ""


def _head(response: httpx.Response, limit: int = 65536) -> bytes:
    """At most the first `limit` bytes of a streamed body (an error's, which should be short)."""
    head = b""
    for chunk in response.iter_bytes():
        head += chunk
        if len(head) >= limit:
            break
    return head[:limit]
