"""Push each response's usage to budget-guard from your own code: an event hook for an `httpx`
client, or for the `openai` and `together` SDK clients, which are built on httpx (or, for recent
`openai` releases, on its successor httpx2, which has the same hooks).

    from bot.usage_push import UsagePusher

    pusher = UsagePusher("http://budget-guard:3000", token=os.environ["BUDGET_GUARD_TOKEN"], feature="search")
    client = pusher.attach(openai.OpenAI())          # or together.Together(), httpx.Client(), AsyncOpenAI()

The hook never slows or fails the caller's request: it reads the body the caller is about to read
anyway, puts the bytes on a bounded queue and returns. A background thread finds the `usage` in
them, batches records and POSTs them as NDJSON to `/v1/usage` with short timeouts, retrying a
failed batch a few times (response ids make a repeat count once). A full queue drops the record
and counts it (`stats.dropped`); a bot that stays down costs records (`stats.failed`), never the
caller's time. `close()`, and interpreter exit, flush what is queued within `flush_timeout` seconds.

Needs only httpx (which the SDKs bring) and the standard library.
"""

from __future__ import annotations

import atexit
import json
import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import httpx

log = logging.getLogger("budget_guard.push")
C = TypeVar("C")
_STOP = object()
MAX_BODY = 4_000_000  # bytes of one response kept for its usage; a bigger JSON answer is not a completion


@dataclass(frozen=True)
class PushStats:
    """What the pusher did so far: records pushed, dropped (queue full), failed (the bot could not be
    reached or refused the batch) and rejected (the bot named them as bad)."""

    sent: int = 0
    dropped: int = 0
    failed: int = 0
    rejected: int = 0


class UsagePusher:
    """Collects usage from responses (see `attach`) and pushes it to budget-guard in the background."""

    def __init__(self, base_url: str, token: str, *, feature: str | None = None, environment: str | None = None,
                 api_key: str | None = None, tags: dict[str, str] | None = None, batch_size: int = 100,
                 flush_interval: float = 2.0, max_queue: int = 10_000, timeout: float = 2.0, retries: int = 3,
                 flush_timeout: float = 5.0) -> None:
        self.url = base_url.rstrip("/") + "/v1/usage"
        self.extra = {k: v for k, v in (("feature", feature), ("environment", environment), ("api_key", api_key),
                                        ("tags", tags)) if v}
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.retries = retries
        self.flush_timeout = flush_timeout
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._http = httpx.Client(timeout=httpx.Timeout(timeout), headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"})
        self._stats = PushStats()
        self._lock = threading.Lock()
        self._closed = threading.Event()  # no more responses taken
        self._stopping = threading.Event()  # closing: each queued batch gets one attempt
        self._failing = False
        self._in_flight = 0
        self._thread = threading.Thread(target=self._run, name="budget-guard-push", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # -- the caller's side -------------------------------------------------------------------

    def attach(self, client: C) -> C:
        """Hook into `client` and return it: an httpx Client or AsyncClient (or httpx2's, which recent
        `openai` releases use), or an SDK client that holds one (`openai`, `together`)."""
        http = client if hasattr(client, "event_hooks") else getattr(client, "_client", None)
        hooks = getattr(http, "event_hooks", None)
        if not isinstance(hooks, dict) or "response" not in hooks:
            raise TypeError(f"cannot attach to {type(client).__name__}: give an httpx.Client or AsyncClient, "
                            "or an openai / together client (built on httpx)")
        hook = self._on_response_async if hasattr(http, "aclose") else self._on_response
        http.event_hooks = {**hooks, "response": [*hooks["response"], hook]}  # type: ignore[union-attr]
        return client

    @property
    def stats(self) -> PushStats:
        with self._lock:
            return self._stats

    def _on_response(self, response: Any) -> None:
        try:
            if self._wanted(response):
                response.read()  # what the SDK reads next: no extra wait, and it keeps the bytes
                self._offer(response.content)
        except Exception:  # noqa: BLE001 - the caller's request must not fail because of us
            pass

    async def _on_response_async(self, response: Any) -> None:
        try:
            if self._wanted(response):
                await response.aread()
                self._offer(response.content)
        except Exception:  # noqa: BLE001
            pass

    def _wanted(self, response: Any) -> bool:
        """A successful POST answered with JSON: a completion, an embedding, a response (not a stream)."""
        return (not self._closed.is_set() and response.request.method == "POST"
                and 200 <= response.status_code < 300
                and "json" in response.headers.get("content-type", "")
                and str(response.request.url) != self.url)

    def _offer(self, body: bytes) -> None:
        if len(body) > MAX_BODY:
            return
        try:
            self._queue.put_nowait(body)
        except queue.Full:
            self._count(dropped=1)

    def flush(self, timeout: float | None = None) -> bool:
        """Push what is queued now; True if it was pushed (or given up on) within `timeout` seconds."""
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout if timeout is not None else self.flush_timeout)
        except queue.Full:
            return False
        return done.wait(timeout if timeout is not None else self.flush_timeout)

    def close(self) -> None:
        """Push what is queued (one attempt each, at most `flush_timeout` seconds), then stop;
        responses after this are not pushed."""
        if self._closed.is_set():
            return
        atexit.unregister(self.close)
        deadline = time.monotonic() + self.flush_timeout
        self._stopping.set()
        self._closed.set()
        try:
            self._queue.put(_STOP, timeout=self.flush_timeout)
        except queue.Full:
            pass
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():  # the bot is slow to answer: what is still here is not pushed
            left = sum(isinstance(item, bytes) for item in list(self._queue.queue)) + self._in_flight
            if left:
                self._count(failed=left)
                log.warning("usage push: %d record(s) not pushed at close", left)
        else:
            self._http.close()

    # -- the background side -----------------------------------------------------------------

    def _run(self) -> None:
        batch: list[dict[str, Any]] = []
        due = time.monotonic() + self.flush_interval
        while True:
            try:
                item = self._queue.get(timeout=max(0.0, due - time.monotonic()))
            except queue.Empty:
                item = None
            if item is _STOP:
                self._send(batch)
                return
            if isinstance(item, threading.Event):
                self._send(batch)
                batch = []
                item.set()
                continue
            if item is not None:
                record = self._record(item)
                if record is not None:
                    batch.append(record)
            if len(batch) >= self.batch_size or time.monotonic() >= due:
                self._send(batch)
                batch = []
                due = time.monotonic() + self.flush_interval

    def _record(self, body: bytes) -> dict[str, Any] | None:
        """The usage record of a response body, or None if it carries no usage."""
        try:
            obj = json.loads(body)
        except ValueError:
            return None
        if type(obj) is not dict or type(obj.get("usage")) is not dict or type(obj.get("model")) is not str:
            return None
        created = obj.get("created") or obj.get("created_at")
        return {"id": obj.get("id") if type(obj.get("id")) is str else f"push-{uuid.uuid4().hex}",
                "created": created if type(created) is int else int(time.time()),
                "model": obj["model"], "usage": obj["usage"], **self.extra}

    def _send(self, batch: list[dict[str, Any]]) -> None:
        """POST the batch; retry what the bot could not take (one attempt only once closing)."""
        lines = [json.dumps(record) for record in batch]
        problem, attempt = "", 0
        self._in_flight = len(lines)
        while lines:
            try:
                answer = self._http.post(self.url, content="\n".join(lines).encode())
            except httpx.HTTPError as exc:
                problem = f"cannot reach budget-guard ({type(exc).__name__})"
            else:
                if answer.status_code == 200:
                    self._count(sent=len(lines))
                    lines = []
                    break
                bad = {e.get("line") for e in _errors(answer)} if answer.status_code == 422 else set()
                if bad:  # the bot named bad lines (and applied nothing): drop those, push the rest
                    self._count(rejected=len(bad))
                    log.warning("budget-guard refused %d usage record(s), first: %s", len(bad), _errors(answer)[0])
                    lines = [line for n, line in enumerate(lines, start=1) if n not in bad]
                    continue
                problem = f"budget-guard answered {answer.status_code}"
                if answer.status_code not in (429, 502, 503, 504):
                    break
            if self._stopping.is_set() or attempt >= self.retries:
                break
            self._stopping.wait(min(0.5 * 2**attempt, 4.0))
            attempt += 1
        self._in_flight = 0
        if lines:
            self._count(failed=len(lines))
            if not self._failing:
                log.warning("usage push failing: %s; %d record(s) not pushed", problem, len(lines))
            self._failing = True
        elif self._failing and batch:
            self._failing = False
            log.info("usage push works again")

    def _count(self, **changes: int) -> None:
        with self._lock:
            self._stats = replace(self._stats, **{k: getattr(self._stats, k) + v for k, v in changes.items()})


def _errors(answer: httpx.Response) -> list[dict[str, Any]]:
    try:
        errors = answer.json().get("errors")
    except (ValueError, AttributeError):
        return []
    return [e for e in errors if type(e) is dict] if type(errors) is list else []
