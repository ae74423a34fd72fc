"""A batch job's output file summed per model as it streams: one JSONL line per response.

A line is an OpenAI-compatible batch result, `{"custom_id", "response": {"status_code", "body":
<chat completion>}, "error"}`; a bare completion object carrying `usage` is read too. Each
response's usage is checked as a pushed record is (`jobs.usage.records.validate`), with the model from
the response (else the job's `model_id`). A line that is not JSON, or whose usage is unusable,
is broken: counted, the first few named, skipped. A failed request (an `error`, or a status code
of 400 or more) bills nothing and is counted apart. Memory is one line and one sum per model.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from jobs.usage.records import UsageRecord, scan_line, validate
from jobs.usage.validation import RecordError

SHOWN_REASONS = 3


@dataclass
class BatchUsage:
    """What one output file held: usage per model, and how many lines failed or were broken."""

    lines: int = 0  # lines that are not blank
    failed: int = 0
    broken: int = 0
    reasons: list[tuple[int, str]] = field(default_factory=list)  # (line number, why) of the first broken lines
    per_model: dict[str, list[int]] = field(default_factory=dict)  # model → [input, cached, output, requests]
    hour: int = 0  # the hour (Unix seconds) the usage is recorded in

    @property
    def recorded(self) -> int:
        return sum(sums[3] for sums in self.per_model.values())

    def broken_note(self) -> str:
        """`3 of 1,204 lines broken and skipped (line 7: not valid JSON …; …)`, or "" if none were."""
        if not self.broken:
            return ""
        shown = "; ".join(f"line {n}: {why}" for n, why in self.reasons[:SHOWN_REASONS])
        more = "; …" if self.broken > SHOWN_REASONS else ""
        return f"{self.broken:,} of {self.lines:,} lines broken and skipped ({shown}{more})"

    def records(self, tags: str) -> list[UsageRecord]:
        """One batch-mode record per model, summing its responses, in the job's hour."""
        return [
            UsageRecord(None, self.hour, model, "batch", tin, cached, tout, requests, "", "", "", "", tags)
            for model, (tin, cached, tout, requests) in sorted(self.per_model.items())
        ]


def summarize_output(lines: Iterable[bytes | None], *, when: int, default_model: str | None,
                     latest: int) -> BatchUsage:
    """Sum the usage of every response in `lines` (from `split_lines`), recorded at `when` (Unix seconds)."""
    usage = BatchUsage(hour=when - when % 3600)
    per_model = usage.per_model
    for number, raw in enumerate(lines, start=1):
        if raw is not None and (not raw or raw.isspace()):
            continue  # a blank line is no response: neither counted nor broken
        usage.lines += 1
        if raw is None:
            _broken(usage, number, "longer than any response line can be")
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            _broken(usage, number, "not valid UTF-8 text")
            continue
        try:
            body = _response_body(scan_line(text, lossy=False))
        except (ValueError, RecordError) as exc:
            _broken(usage, number, str(exc))
            continue
        if body is None:
            usage.failed += 1
            continue
        try:
            record = _record(body, when, default_model, latest)
        except RecordError as exc:
            _broken(usage, number, str(exc))
            continue
        sums = per_model.get(record.model)
        if sums is None:
            per_model[record.model] = [record.input_tokens, record.cached_input_tokens, record.output_tokens, 1]
        else:
            sums[0] += record.input_tokens
            sums[1] += record.cached_input_tokens
            sums[2] += record.output_tokens
            sums[3] += 1
    return usage


def _broken(usage: BatchUsage, number: int, reason: str) -> None:
    usage.broken += 1
    if len(usage.reasons) < SHOWN_REASONS:
        usage.reasons.append((number, reason[:200]))


def _response_body(line: Any) -> dict[str, Any] | None:
    """The completion a result line carries; None for a failed request; RecordError if neither."""
    if type(line) is not dict:
        raise RecordError("expected a JSON object per line")
    if line.get("error"):
        return None
    response = line.get("response")
    if response is None and "usage" in line:
        return line  # a bare completion object
    if type(response) is not dict:
        raise RecordError("no response object")
    status = response.get("status_code")
    if type(status) is int and status >= 400:
        return None
    body = response.get("body", response)
    if type(body) is not dict:
        raise RecordError("response.body must be an object")
    return body


def _record(body: dict[str, Any], when: int, default_model: str | None, latest: int) -> UsageRecord:
    usage = body.get("usage")
    if type(usage) is not dict:
        raise RecordError("the response has no usage" if usage is None else "usage must be an object")
    details = usage.get("prompt_tokens_details")
    if details is not None and type(details) is not dict:
        raise RecordError("usage.prompt_tokens_details must be an object")
    return validate(
        event_id=None,
        created=when,
        timestamp=None,
        model=body.get("model") or default_model,
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        cached_tokens=details.get("cached_tokens") if details else None,
        requests=None,
        mode="batch",
        project=None,
        feature=None,
        api_key=None,
        environment=None,
        tags=None,
        latest=latest,
    )
