"""together.ai batch jobs as spend: each finished job's output file, summed per model, recorded
once as batch-mode usage at the batch price.

`GET /v1/batches` lists the account's jobs (`BatchJob`). A job that finished (COMPLETED, or
FAILED, EXPIRED or CANCELLED with an output file: what ran is billed) at or after the pull's
window start (`jobs.usage.sources.window_start`) and was not counted before has its output file
streamed from `GET /v1/files/{output_file_id}/content` and summed per model
(`jobs.usage.sources.batch_output`), never held whole. Its usage lands in the hour it finished,
tagged `batch=JOB_ID`, through the ledger's own validation, costing and bucketing
(`jobs.usage.ingest.apply_records`), in the same transaction that claims the job's id
(`together-batch:JOB_ID` in `seen_events`): a job is counted once, however often it is listed,
pulled, retried or re-pulled. Broken lines are skipped and said (the pull's notes and
`source_state.last_note`). A job whose file cannot be read is left for the next pull, and the
pull fails naming it, after the other jobs are counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from db.engine import transaction
from db.ledger import claim_event_ids, seen_event_ids
from db.source_state import record_source_note, source_state
from jobs.config.context import Context
from jobs.config.sections import Source
from jobs.usage.ingest import apply_records
from jobs.usage.records import latest_allowed
from jobs.usage.sources import PullResult, RetryPolicy, SchemaError, SourceError, api_root, client_for, window_start
from jobs.usage.sources.batch_output import BatchUsage, summarize_output
from jobs.usage.sources.together import optional_time, parse_time, tag_value, together_key

FINISHED = frozenset({"COMPLETED", "FAILED", "EXPIRED", "CANCELLED"})
CLAIM_PREFIX = "together-batch:"


@dataclass(frozen=True)
class BatchJob:
    """A listed batch job, reduced to what costing it needs."""

    id: str
    status: str
    created_at: datetime
    model_id: str | None
    output_file_id: str | None
    completed_at: datetime | None

    @property
    def claim(self) -> str:
        return CLAIM_PREFIX + self.id

    def finished_by(self, now: datetime) -> datetime | None:
        """When the job finished (its `completed_at`; `now` for a finished job that gives none), or None."""
        if self.status not in FINISHED or not self.output_file_id:
            return None
        return self.completed_at or now


def parse_batch_jobs(payload: Any) -> list[BatchJob]:
    """The jobs of `GET /v1/batches` (a bare array of `BatchJob`), checked for the fields we read."""
    if not isinstance(payload, list):
        raise SchemaError("expected an array of batch jobs")
    jobs = []
    for item in payload:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
            raise SchemaError("a batch job lacks an id")
        if not isinstance(item.get("status"), str):
            raise SchemaError(f"batch job {item['id'][:80]} has no status")
        for name in ("model_id", "output_file_id"):
            if item.get(name) is not None and not isinstance(item[name], str):
                raise SchemaError(f"batch job {item['id'][:80]}: {name} is not a string")
        jobs.append(BatchJob(
            id=item["id"][:160],
            status=item["status"],
            created_at=parse_time(item.get("created_at"), "created_at"),
            model_id=item.get("model_id") or None,
            output_file_id=item.get("output_file_id") or None,
            completed_at=optional_time(item.get("completed_at"), "completed_at"),
        ))
    return jobs


def pull_together_batches(
    context: Context,
    source: Source,
    now: datetime,
    *,
    retry: RetryPolicy | None = None,
) -> PullResult:
    """Count every batch job that finished since the window start and was not counted yet."""
    sessions, settings, catalog = context.sessions, context.settings, context.catalog
    key = together_key(source, settings)
    root = api_root(source.base_url)
    with sessions() as session:
        state = source_state(session, source.name)
        since = window_start(state.cursor if state else None, source, settings, now)
    latest = latest_allowed(now)
    notes: list[str] = []
    failures: list[str] = []
    pages = rows = 0
    newest: datetime | None = None
    with client_for(source, key, retry) as client:
        jobs = client.get_json(f"{root}/v1/batches", None, parse_batch_jobs)
        pages += 1
        due = [(job, finished) for job in jobs
               if (finished := job.finished_by(now)) is not None and since <= finished <= now]
        with sessions() as session:
            counted = seen_event_ids(session, [job.claim for job, _ in due])
        for job, finished in due:
            if job.claim in counted:
                continue
            when = int(finished.timestamp())
            try:
                usage = client.stream_lines(
                    f"{root}/v1/files/{job.output_file_id}/content",
                    lambda lines: summarize_output(lines, when=when, default_model=job.model_id, latest=latest),
                )
            except SourceError as exc:
                failures.append(f"batch {job.id}: output file {job.output_file_id}: {exc}")
                continue
            pages += 1
            note = _note(job, usage)
            with transaction(sessions) as session:
                if not claim_event_ids(session, [job.claim], now):
                    continue  # counted meanwhile (another replica)
                rows += apply_records(session, catalog, usage.records(f"batch={tag_value(job.id)}"),
                                      source=source.name, now=now).accepted
                if note:
                    record_source_note(session, source.name, note, now)
            if note:
                notes.append(note)
            if usage.per_model:
                newest = finished if newest is None else max(newest, finished)
    if failures:
        done = f" ({len(notes)} note(s): {'; '.join(notes)})" if notes else ""
        raise SourceError("; ".join(failures) + f"; will retry on the next pull{done}")
    return PullResult(source.name, since, now, pages, rows, newest, notes=tuple(notes))


def _note(job: BatchJob, usage: BatchUsage) -> str:
    parts = []
    if usage.broken:
        parts.append(usage.broken_note())
    if not usage.per_model and not usage.broken:
        parts.append(f"no usage in {usage.lines:,} line(s) ({usage.failed:,} failed request(s))")
    return f"batch {job.id}: " + "; ".join(parts) if parts else ""
