"""Plumbing shared by the fake APIs: a local HTTP server in a thread, a request log, faults.

A fake subclasses `FakeHTTPServer` and implements `handle()`. The base class binds
127.0.0.1 on an ephemeral port, records every request it receives (faulted ones too, so
a test can count retries), and answers from a queue of programmed faults before it asks
`handle()`. Every response closes its connection, so a stopped fake leaves no pooled
connection behind in the client under test.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

__all__ = ["FakeHTTPServer", "Fault", "RecordedRequest", "Response", "api_error", "to_json_bytes"]

_PORTS_USED: set[int] = set()  # by the fakes started in this process


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request as the fake received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    received_at: float = field(default_factory=time.time)

    def header(self, name: str) -> str | None:
        """The value of header `name`, matched case-insensitively."""
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)

    @property
    def bearer_token(self) -> str | None:
        """The token of an `Authorization: Bearer ...` header, if any."""
        scheme, _, token = (self.header("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        return token.strip() or None

    def query_values(self, name: str) -> list[str]:
        """All values of a query parameter, whether sent as `name=a&name=b` or `name[]=a`."""
        return self.query.get(name, []) + self.query.get(f"{name}[]", [])

    def query_value(self, name: str) -> str | None:
        """The first value of a query parameter, or None."""
        values = self.query_values(name)
        return values[0] if values else None

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass(frozen=True)
class Response:
    """What the fake answers: status, headers and raw body."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    body_path: Path | None = None  # stream this file as the body (a large download), not `body`
    cut_after: int | None = None  # send only this many body bytes, then close (a download cut short)

    @classmethod
    def file(cls, path: Path, content_type: str = "application/octet-stream") -> Response:
        """The file at `path` as the body, streamed from disk."""
        return cls(200, b"", {"Content-Type": content_type}, body_path=path)

    @classmethod
    def json(cls, payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        """A JSON response."""
        merged = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
        return cls(status, to_json_bytes(payload), merged)

    @classmethod
    def text(cls, text: str, status: int = 200, content_type: str = "text/plain") -> Response:
        """A text response."""
        return cls(status, text.encode(), {"Content-Type": f"{content_type}; charset=utf-8"})


@dataclass
class Fault:
    """A programmed misbehaviour for the next `times` requests that match `path`.

    `response` replaces the normal answer; None means "answer normally" (after `delay`).
    `delay` holds the answer back (bounded by the server's `max_delay`, cut short by
    `stop()`); `drop` closes the connection without answering; `lose_answer` does what
    the request asked, then closes the connection without answering (the client cannot
    tell whether it took effect); `cut_after` answers normally but closes the connection
    after that many bytes of the body.
    """

    response: Response | None = None
    delay: float = 0.0
    drop: bool = False
    lose_answer: bool = False
    cut_after: int | None = None
    path: str | None = None
    times: int = 1

    def matches(self, request: RecordedRequest) -> bool:
        """Whether this fault applies to `request` (same path or below it)."""
        if self.path is None:
            return True
        return request.path == self.path or request.path.startswith(self.path.rstrip("/") + "/")


GARBAGE_BODY = b"<html><body><h1>502 Bad Gateway</h1>upstream said: \x00\xff</body></html>"
WRONG_SCHEMA_BODY: Any = {"object": "surprise", "items": "not the shape you expected"}


class FakeHTTPServer:
    """A local HTTP server in a background thread, with a request log and a fault queue.

    Use as a context manager, or call `start()` / `stop()`. Subclasses implement `handle()`
    and may override `error_response()` (the fake's error envelope) and `target_path()`
    (how a fault target such as a Slack method name maps to a URL path).
    """

    max_delay: float = 10.0
    """Upper bound on any programmed delay, so a forgotten hang cannot stall the suite."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._requests: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._down_status: int | None = None
        self._latency: dict[str | None, float] = {}
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self._refusing = False

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> Self:
        """Bind 127.0.0.1 (an ephemeral port the first time) and serve in a thread."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = self._bind()
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]
        _PORTS_USED.add(self._port)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def _bind(self) -> ThreadingHTTPServer:
        """A listener on this fake's port, or the first time on an ephemeral port no earlier fake in
        this process had: each fake's URL is its own, so nothing the code under test keeps per URL
        (the outbox's joined channels) carries over from an earlier test."""
        refused: list[ThreadingHTTPServer] = []
        try:
            while True:
                server = ThreadingHTTPServer(("127.0.0.1", self._port), self._handler_class())
                if self._port or server.server_address[1] not in _PORTS_USED:
                    return server
                refused.append(server)  # held open until a fresh port turns up, so none comes back
        finally:
            for server in refused:
                server.server_close()

    def stop(self) -> None:
        """Stop serving, wake any held-back request, and release the port."""
        self._stopping.set()
        self._refusing = False
        self._close_listener()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _close_listener(self) -> None:
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    @property
    def port(self) -> int:
        """The TCP port (0 before the first `start()`)."""
        return self._port

    @property
    def origin(self) -> str:
        """`http://127.0.0.1:PORT`, without a trailing slash."""
        return f"http://127.0.0.1:{self._port}"

    # -- recording -------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self._requests.clear()

    # -- faults ----------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        """Queue a fault; faults are consumed first-in, first-out by matching requests."""
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        """Drop every queued fault and every latency, and bring the server back up."""
        with self._lock:
            self._faults.clear()
            self._latency.clear()
        self.set_down(False)

    @property
    def pending_faults(self) -> int:
        """How many faulted answers are still queued."""
        with self._lock:
            return sum(f.times for f in self._faults)

    def fail_next(
        self,
        target: str | None = None,
        *,
        status: int | None = None,
        error: str | None = None,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` requests to `target` (None: any) with an error.

        `status` None means the fake's usual failure (500). `retry_after` sets the
        `Retry-After` header in seconds. `error` is the error code in the body.
        """
        response = self.error_response(status, error, retry_after)
        self.add_fault(Fault(response=response, path=self._path_of(target), times=times))

    def hang_next(self, seconds: float, target: str | None = None, *, times: int = 1) -> None:
        """Hold the next answers back for `seconds` (bounded by `max_delay`), then answer normally."""
        self.add_fault(Fault(delay=seconds, path=self._path_of(target), times=times))

    def set_latency(self, seconds: float, target: str | None = None) -> None:
        """Hold back every answer to `target` (None: any) by `seconds` until `clear_faults()`, like a
        slow upstream; requests are recorded on arrival. 0 removes it."""
        with self._lock:
            if seconds > 0:
                self._latency[self._path_of(target)] = seconds
            else:
                self._latency.pop(self._path_of(target), None)

    def drop_next(self, target: str | None = None, *, times: int = 1) -> None:
        """Close the connection of the next requests without answering."""
        self.add_fault(Fault(drop=True, path=self._path_of(target), times=times))

    def lose_answer_next(self, target: str | None = None, *, times: int = 1) -> None:
        """Carry out the next requests, then close their connections without answering."""
        self.add_fault(Fault(lose_answer=True, path=self._path_of(target), times=times))

    def cut_body_next(self, target: str | None = None, *, after_bytes: int, times: int = 1) -> None:
        """Answer the next requests normally but close the connection after `after_bytes` of the body."""
        self.add_fault(Fault(cut_after=after_bytes, path=self._path_of(target), times=times))

    def garbage_next(self, target: str | None = None, *, times: int = 1) -> None:
        """Answer the next requests with 200 and an HTML body that is not JSON."""
        garbage = Response(200, GARBAGE_BODY, {"Content-Type": "text/html"})
        self.add_fault(Fault(response=garbage, path=self._path_of(target), times=times))

    def wrong_schema_next(
        self, target: str | None = None, *, body: Any = None, times: int = 1
    ) -> None:
        """Answer the next requests with 200 and valid JSON of the wrong shape (`body` if given)."""
        payload = WRONG_SCHEMA_BODY if body is None else body
        self.add_fault(
            Fault(response=Response.json(payload), path=self._path_of(target), times=times)
        )

    def set_down(self, down: bool = True, *, status: int | None = 503) -> None:
        """Make every request fail until `set_down(False)`.

        With a `status`, each request is answered with that error. With `status=None` the
        server stops listening, so connections are refused; `set_down(False)` listens again
        on the same port.
        """
        refuse = down and status is None
        with self._lock:
            self._down_status = status if down else None
        if refuse and not self._refusing:
            self._refusing = True
            self._close_listener()
        elif not refuse and self._refusing:
            self._refusing = False
            self.start()

    def _path_of(self, target: str | None) -> str | None:
        return None if target is None else self.target_path(target)

    def _take_fault(self, request: RecordedRequest) -> Fault | None:
        with self._lock:
            for index, fault in enumerate(self._faults):
                if fault.matches(request):
                    fault.times -= 1
                    if fault.times <= 0:
                        del self._faults[index]
                    return fault
        return None

    # -- hooks for subclasses --------------------------------------------------------

    def handle(self, request: RecordedRequest) -> Response:
        """The normal answer to `request`. Called under the server's lock."""
        raise NotImplementedError

    def error_response(
        self, status: int | None, error: str | None, retry_after: int | None
    ) -> Response:
        """An error in the OpenAI-style envelope that OpenAI and together.ai share."""
        status = 500 if status is None else status
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        return Response.json(api_error(status, error), status, headers)

    def target_path(self, target: str) -> str:
        """The URL path a fault `target` stands for; by default the target is a path."""
        return target

    # -- serving ---------------------------------------------------------------------

    def _respond(self, request: RecordedRequest) -> Response | None:
        """The answer to send, or None to drop the connection."""
        with self._lock:
            self._requests.append(request)
            down_status = self._down_status
        if down_status is not None:
            return self.error_response(down_status, "service_unavailable", None)
        with self._lock:
            latency = max((seconds for path, seconds in self._latency.items()
                           if path is None or Fault(path=path).matches(request)), default=0.0)
        if latency > 0:
            self._stopping.wait(min(latency, self.max_delay))
            if self._stopping.is_set():
                return None
        fault = self._take_fault(request)
        if fault is not None:
            if fault.delay > 0:
                self._stopping.wait(min(fault.delay, self.max_delay))
                if self._stopping.is_set():
                    return None
            if fault.lose_answer:
                with self._lock:
                    self.handle(request)
                return None
            if fault.drop:
                return None
            if fault.response is not None:
                return fault.response
            if fault.cut_after is not None:
                with self._lock:
                    return replace(self.handle(request), cut_after=fault.cut_after)
        with self._lock:
            return self.handle(request)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 10  # a client that connects and sends nothing cannot pin a thread

            def _serve(self) -> None:
                try:
                    request = self._read_request()
                    response = fake._respond(request)
                    if response is None:
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    self._write(response)
                except (ConnectionError, TimeoutError, OSError):
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def _read_request(self) -> RecordedRequest:
                split = urlsplit(self.path)
                return RecordedRequest(
                    method=self.command,
                    path=split.path,
                    query=parse_qs(split.query, keep_blank_values=True),
                    headers=dict(self.headers.items()),
                    body=self._read_body(),
                )

            def _read_body(self) -> bytes:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _write(self, response: Response) -> None:
                self.send_response(response.status)
                for name, value in response.headers.items():
                    self.send_header(name, value)
                path = response.body_path
                length = path.stat().st_size if path is not None else len(response.body)
                self.send_header("Content-Length", str(length))
                self.send_header("Connection", "close")
                self.end_headers()
                budget = length if response.cut_after is None else min(length, response.cut_after)
                if path is None:
                    self.wfile.write(response.body[:budget])
                else:
                    with path.open("rb") as handle:
                        while budget > 0 and (chunk := handle.read(min(budget, 1 << 20))):
                            self.wfile.write(chunk)
                            budget -= len(chunk)
                self.close_connection = True
                if response.cut_after is not None and response.cut_after < length:
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def api_error(status: int, code: str | None = None, message: str | None = None) -> dict[str, Any]:
    """The `{"error": {message, type, param, code}}` body both provider specs define."""
    kind = {
        400: "invalid_request_error",
        401: "invalid_request_error",
        403: "permission_error",
        404: "invalid_request_error",
        429: "rate_limit_error",
    }.get(status, "server_error")
    text = message or {
        429: "Rate limit reached. Please try again later.",
        503: "The server is temporarily unavailable.",
    }.get(status, f"Request failed with status {status}.")
    return {"error": {"message": text, "type": kind, "param": None, "code": code}}


def to_json_bytes(payload: Any) -> bytes:
    """JSON-encode, writing Decimal and datetime values the way an API would."""
    return json.dumps(payload, default=_json_default).encode()


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")
