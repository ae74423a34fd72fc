"""The one-pass import of a clean CSV file: read in blocks, each row validated and summed into its
hour bucket as it streams by, event ids claimed as new on the way (on PostgreSQL through one
open COPY, so the server indexes them while the file is still being read), and the buckets
costed and written once, at the end, in the same transaction.

It handles the clean case only and gives up (`Unusual`) at the first thing that is not: bytes
that are not UTF-8, a line over MAX_LINE_BYTES, unreadable CSV, a bad line, an id counted
before or twice, a bucket that would overflow. `import_file` then rolls back and runs its two
careful passes, which name every problem as they always have. A row outside the common shape
(ISO times, tags, non-ASCII text, surrounding spaces in numbers) is validated by the careful
reader's own `_csv_record`, so both paths accept exactly the same rows.
"""

from __future__ import annotations

import csv
import gc
import io
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from itertools import chain
from typing import Any

from db.bulk import BucketsTaken, EventsSeen, LedgerWriter, bulk_writer
from db.engine import transaction
from db.ledger import BucketFull
from jobs.config.context import Context
from jobs.usage.costing import Costing, bucket_rows
from jobs.usage.file_reader import CSV_FIELDS, FileReader
from jobs.usage.ingest import IngestResult
from jobs.usage.records import BOM, EARLIEST, HOUR, LIMITS, MODES
from jobs.usage.validation import MAX_COUNT, MAX_LINE_BYTES, RecordError

BLOCK_BYTES = 1 << 20
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_HELD_BUCKETS = 250_000
"""Buckets summed in memory before they are written (each is written once per flush)."""


class Unusual(Exception):
    """The file is not one the one-pass import takes; roll back and take the careful passes."""


def fast_csv_import(
    context: Context, reader: FileReader, *, source: str, now: datetime, claim_lines: int,
    report: Callable[[str, int, int], None],
) -> IngestResult:
    """Import `reader`'s CSV file in one pass, all or nothing; Unusual (nothing kept) if it is
    not clean."""
    total = reader.path.stat().st_size
    collecting = gc.isenabled()
    gc.disable()  # millions of short-lived rows and no cycles: collecting would only rescan the sums
    try:
        with transaction(context.sessions) as session:
            writer = bulk_writer(session, source)
            try:
                result = _stream(context, session, writer, reader, now, claim_lines, total, report)
                writer.finish()
            except (EventsSeen, BucketsTaken, BucketFull, RecordError, csv.Error, UnicodeDecodeError) as exc:
                writer.abort()
                raise Unusual(str(exc)) from None
            except BaseException:
                writer.abort()
                raise
    finally:
        if collecting:
            gc.enable()
    report("importing", total, total)
    return result


def _stream(
    context: Context, session: Any, writer: LedgerWriter, reader: FileReader, now: datetime, claim_lines: int,
    total: int, report: Callable[[str, int, int], None],
) -> IngestResult:
    blocks = _Blocks(reader.path, total, report)
    rows = csv.reader(chain.from_iterable(blocks))
    header = next(rows, None)
    if header is None:
        raise Unusual("no header")
    index = reader._column_index([h.strip() for h in header])
    width = len(header)
    at = {name: index.get(name, width) for name in CSV_FIELDS}  # a missing column reads the "" appended to each row
    if "timestamp" in index and "created" not in index:
        at["created"] = width  # ISO times: every row takes the careful route
    (i_id, i_created, i_model, i_prompt, i_completion, i_cached, i_requests, i_mode, i_project, i_feature,
     i_api_key, i_environment, i_tags) = (at[name] for name in CSV_FIELDS if name != "timestamp")
    forced = reader.project
    if forced is not None and (len(forced) > LIMITS["project"] or not forced.isascii() or "\x00" in forced):
        raise Unusual("the --project name takes the careful route")
    latest = reader.latest
    sums: dict[tuple[str, ...], dict[int, list[Any]]] = {}  # by the bucket's other keys, then by hour
    held = 0
    ids: list[str] = []
    exact_first = True  # the first ids are claimed exactly: a file imported before gives up at once
    accepted = 0
    costing = Costing(context.catalog, session)

    def claim() -> None:
        nonlocal exact_first
        if exact_first:
            exact_first = False
            if len(writer.claim_event_ids(ids, now)) != len(ids):  # fewer: one was seen before, or came twice
                raise EventsSeen()
        else:
            writer.claim_new_event_ids(ids, now)
        ids.clear()

    def flush() -> None:
        nonlocal sums, held
        if ids:
            claim()
        writer.end_claims()
        priced = {(dims[0], dims[1], hour // 86400) for dims, hours in sums.items() if dims[1] != "dedicated"
                  for hour in hours}
        for model, mode, day in priced:  # looked up now: no query may run while the rows stream
            costing.price(model, mode, EPOCH + timedelta(days=day))
        if sums:
            first = min(min(hours) for hours in sums.values())
            last = max(max(hours) for hours in sums.values())
            held_rows = (((hour, *dims), acc) for dims, hours in sums.items() for hour, acc in hours.items())
            writer.add_buckets((costing.cost(bucket) for bucket in bucket_rows(held_rows)),
                               span=(EPOCH + timedelta(seconds=first), EPOCH + timedelta(seconds=last)))
        sums, held = {}, 0

    for row in rows:
        fast = len(row) == width
        if fast:
            row.append("")
            event_id = row[i_id].strip()
            model = row[i_model].strip()
            mode = row[i_mode].strip() or "serverless"
            project = forced if forced is not None else row[i_project].strip()
            feature, api_key = row[i_feature].strip(), row[i_api_key].strip()
            environment = row[i_environment].strip()
            try:
                when = int(row[i_created])
                prompt = int(row[i_prompt])
                cell = row[i_completion]
                completion = int(cell) if cell else 0
                cell = row[i_cached]
                cached = int(cell) if cell else 0
                cell = row[i_requests]
                requests = int(cell) if cell else 1
            except ValueError:
                when = -1
            fast = (blocks.plain and EARLIEST <= when <= latest and 0 <= cached <= prompt <= MAX_COUNT
                    and 0 <= completion <= MAX_COUNT and 0 <= requests <= MAX_COUNT and bool(model)
                    and mode in MODES and not row[i_tags] and len(event_id) <= 200 and len(model) <= 200
                    and len(project) <= 128 and len(feature) <= 128 and len(api_key) <= 128
                    and len(environment) <= 64)
            if fast:
                hour = when - when % HOUR
                dims = (model, mode, project, feature, api_key, environment, "")
            else:
                del row[-1]
        elif not row or (len(row) == 1 and not row[0].strip()):
            continue
        if not fast:  # validated as the careful pass does
            record = reader._csv_record(row, index)
            event_id, hour, dims = record.event_id or "", record.hour, record.bucket_key()[1:]
            prompt, cached, completion, requests = (
                record.input_tokens, record.cached_input_tokens, record.output_tokens, record.requests)
        hours = sums.get(dims)
        if hours is None:
            hours = sums[dims] = {}
        acc = hours.get(hour)
        if acc is None:
            hours[hour] = [prompt, cached, completion, requests, None]
            held += 1
        else:
            acc[0] += prompt
            acc[1] += cached
            acc[2] += completion
            acc[3] += requests
        accepted += 1
        if event_id:
            ids.append(event_id)
            if len(ids) >= claim_lines:
                claim()
        if held >= MAX_HELD_BUCKETS:
            flush()
    flush()
    return IngestResult(accepted=accepted, duplicates=0)


class _Blocks:
    """The file's lines, read a block at a time: each block decoded strictly (UnicodeDecodeError:
    not UTF-8) and checked for over-long lines; `plain` stays True while every block was ASCII
    without NUL, so rows may skip the per-field text checks."""

    def __init__(self, path: Any, total: int, report: Callable[[str, int, int], None]) -> None:
        self.path, self.total, self.report = path, total, report
        self.plain = True

    def __iter__(self) -> Iterator[io.StringIO]:
        with self.path.open("rb") as handle:
            carry = handle.read(len(BOM))
            done = len(carry)
            carry = carry.removeprefix(BOM)
            while block := handle.read(BLOCK_BYTES):
                done += len(block)
                data = carry + block
                cut = data.rfind(b"\n") + 1
                carry = data[cut:]
                if len(carry) > MAX_LINE_BYTES:
                    raise Unusual("a line is too long")
                if cut:
                    yield self._lines(data[:cut])
                self.report("importing", done, self.total)
        if carry:
            yield self._lines(carry)

    def _lines(self, data: bytes) -> io.StringIO:
        if len(data) > MAX_LINE_BYTES and max(map(len, data.split(b"\n"))) >= MAX_LINE_BYTES:
            raise Unusual("a line is too long")
        if self.plain and not (data.isascii() and b"\x00" not in data):
            self.plain = False
        return io.StringIO(data.decode("utf-8"), newline="\n")
