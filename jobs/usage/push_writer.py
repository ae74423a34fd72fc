"""Group commit for pushed usage: one writer thread applies every push that is waiting in one
transaction, so fifty clients pushing at once cost a few commits instead of fifty that queue
on SQLite's single writer or contend for the same bucket rows on PostgreSQL. `push` is the way in
for a push body (what `POST /v1/usage` does)."""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone

from db.engine import transaction, write_lock
from jobs.config.context import Context
from jobs.usage.costing import check_costs
from jobs.usage.ingest import IngestResult, apply_records
from jobs.usage.records import UsageRecord, parse_body

log = logging.getLogger(__name__)
MAX_BATCH = 100  # pushes per transaction


@dataclass
class _Push:
    records: list[UsageRecord]
    source: str
    now: datetime
    done: threading.Event = field(default_factory=threading.Event)
    result: IngestResult | None = None
    error: BaseException | None = None


class PushWriter:
    """Applies pushes (already parsed and validated) in batches; `write` returns once its push
    is committed, or raises what stopped it. A push is never half-applied."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self._queue: queue.SimpleQueue[_Push | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="push-writer", daemon=True)
        self._thread.start()

    def push(self, body: bytes, *, project: str, now: datetime | None = None) -> IngestResult:
        """Apply a push body (one JSON record or NDJSON) for `project`, all or nothing; IngestRejected
        naming each bad line, or a bucket it would overflow, before anything is written."""
        now = now or datetime.now(timezone.utc)
        records = parse_body(body, project=project, now=now)
        check_costs(records, self.context.catalog)  # here, not in the writer: a refusal costs the others nothing
        return self.write(records, source="push", now=now)

    def write(self, records: list[UsageRecord], *, source: str, now: datetime) -> IngestResult:
        if not self._thread.is_alive():
            raise RuntimeError("the push writer has stopped")
        push = _Push(records, source, now)
        self._queue.put(push)
        push.done.wait()
        if push.error is not None:
            raise push.error
        if push.result is None:
            raise RuntimeError("the push writer finished a push without a result or an error")
        return push.result

    def close(self, timeout: float = 30) -> None:
        """Finish what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = [first], False
            while len(batch) < MAX_BATCH:
                try:
                    push = self._queue.get_nowait()
                except queue.Empty:
                    break
                if push is None:
                    stop = True
                    break
                batch.append(push)
            self._apply(batch)
            if stop:
                return

    def _apply(self, batch: list[_Push]) -> None:
        try:
            try:
                self._commit(batch)
            except Exception:
                if len(batch) == 1:
                    raise
                # One push may be what failed the batch: apply each on its own, so it alone fails.
                log.warning("a batch of %d pushes failed; applying them one by one", len(batch))
                for push in batch:
                    try:
                        self._commit([push])
                    except Exception as exc:
                        push.result, push.error = None, exc
        except Exception as exc:
            batch[0].error = exc
        finally:
            for push in batch:
                push.done.set()

    def _commit(self, batch: list[_Push]) -> None:
        results = []
        context = self.context
        with write_lock(context.engine), transaction(context.sessions) as session:
            for push in batch:
                results.append(apply_records(session, context.catalog, push.records, source=push.source, now=push.now))
        for push, result in zip(batch, results):
            push.result = result
