"""Usage imported from files, all or nothing and safe to run again: a clean CSV file in one pass
(`jobs.usage.fast_import`); anything else, or a CSV file that pass gives up on, streamed twice as
validated lines (never read whole), checked in full first, then applied in one transaction
through the bulk writer; with `skip_bad`, bad lines go to a file instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

from db.bulk import bulk_writer
from db.engine import transaction
from db.ledger import BucketFull
from jobs.config.context import Context
from jobs.usage.costing import bucket_refusal
from jobs.usage.fast_import import Unusual, fast_csv_import
from jobs.usage.file_reader import CSV_FIELDS, FileReader, file_format
from jobs.usage.ingest import IngestResult, apply_records
from jobs.usage.records import MAX_ERRORS, IngestRejected, UsageRecord, latest_allowed

__all__ = ["CSV_FIELDS", "Progress", "file_format", "import_file"]

Progress = Callable[[str, int, int], None]
"""Called as (phase, bytes done, bytes total); phase is "checking" or "importing" (the one pass
reports "importing" only)."""


def import_file(
    context: Context,
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
    """Import a CSV or JSONL file: a clean CSV file in one pass; otherwise (or when that pass
    finds the file is not clean, and rolls back) streaming it twice, first checking every line,
    then applying them.

    Bad lines refuse the file before anything is applied (IngestRejected), unless
    `skip_bad` names a file to write them to; then the good lines are applied. The apply
    pass is one transaction (chunks of `chunk_lines` are written inside it), so an import
    is all or nothing: a bucket that would overflow, a crash or a lost database leaves
    nothing of the file behind, and running it again is safe."""
    now = now or datetime.now(timezone.utc)
    catalog = context.catalog
    reader = FileReader(path, file_format(path, fmt), latest_allowed(now), dict(columns or {}), project)
    total_bytes = path.stat().st_size
    report = on_progress or (lambda phase, done, total: None)
    if reader.fmt == "csv" and skip_bad is None:
        try:
            return fast_csv_import(context, reader, source=source, now=now, claim_lines=chunk_lines, report=report)
        except Unusual:
            pass  # nothing of it was kept; the careful passes below name what is wrong, if anything

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
    with transaction(context.sessions) as session:
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
            raise bucket_refusal((line.record for line in reader.lines() if line.record), full.rows) from None
    report("importing", total_bytes, total_bytes)
    return IngestResult(accepted=accepted, duplicates=duplicates, bad=bad)
