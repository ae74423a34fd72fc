"""Usage imported from files: a CSV or JSONL file streamed as validated lines (never read whole),
checked in full first, then applied in one transaction through the bulk writer, so an import is
all or nothing and running it again is safe; with `skip_bad`, bad lines go to a file instead.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal, TextIO

from db.bulk import bulk_writer
from db.engine import transaction
from db.ledger import BucketFull
from jobs.config.context import Context
from jobs.usage.costing import bucket_refusal
from jobs.usage.ingest import IngestResult, apply_records
from jobs.usage.records import (
    BOM,
    MAX_ERRORS,
    IngestRejected,
    UsageRecord,
    latest_allowed,
    parse_record,
    scan_line,
    validate,
)
from jobs.usage.validation import MAX_COUNT, MAX_LINE_BYTES, RecordError

CSV_FIELDS = (
    "id", "created", "timestamp", "model", "prompt_tokens", "completion_tokens", "cached_tokens", "requests",
    "mode", "project", "feature", "api_key", "environment", "tags",
)
CSV_ALIASES = {
    "prompt_tokens": ("input_tokens",),
    "completion_tokens": ("output_tokens",),
    "cached_tokens": ("cached_input_tokens",),
}


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
    """Import a CSV or JSONL file, streaming it twice: first check every line, then apply.

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
