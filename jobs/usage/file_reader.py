"""Reading a usage file for import: a CSV or JSONL file streamed as validated lines, one at a
time, never the whole file, with every reason a line is refused found and named by line.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from jobs.usage.records import BOM, IngestRejected, UsageRecord, parse_record, scan_line, validate
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
