"""Imported usage (CSV and JSONL), and the same usage pulled, pushed and imported giving one ledger."""

from __future__ import annotations

import csv
import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from db.models import UsageBucket
from jobs.config.catalog import build_catalog
from jobs.config.context import Context
from jobs.config.sections import Source
from jobs.config.settings import Settings
from jobs.usage.imports import import_file
from jobs.usage.pull import pull_one
from jobs.usage.push_writer import PushWriter
from jobs.usage.records import IngestRejected
from jobs.usage.sources import RetryPolicy
from pricing.catalog import Catalog
from tests.fakes.openai_usage import FakeOpenAIUsage, UsageEvent
from tests.test_ledger_ingest import MAESTRO, NOW, bucket_count, response, snapshot

NOV_1 = datetime(2026, 11, 1, tzinfo=timezone.utc)
OTHER = "deepseek-ai/DeepSeek-V3"
CSV_HEADER = ["id", "created", "model", "prompt_tokens", "completion_tokens", "cached_tokens", "mode", "project", "api_key"]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return build_catalog(Settings())


def events() -> list[UsageEvent]:
    """Single requests over two weeks: two models, three projects, some batch, some cached."""
    out = []
    for n in range(300):
        out.append(
            UsageEvent(
                NOV_1 + timedelta(minutes=n * 67),
                [MAESTRO, OTHER, "nobody/unpriced-model"][n % 3],
                input_tokens=500 + 7 * n,
                output_tokens=100 + n,
                input_cached_tokens=(n % 4) * 10,
                num_model_requests=1,
                project_id=["web", "etl", "search"][n % 5 % 3],
                api_key_id=f"key_{n % 2}",
                batch=n % 7 == 0,
            )
        )
    return out


def as_response(n: int, e: UsageEvent, prefix: str) -> dict[str, Any]:
    record = response(f"{prefix}-{n}", e.model, e.input_tokens, e.output_tokens, e.input_cached_tokens or None,
                      int(e.unix_time), api_key=e.api_key_id)
    if e.batch:
        record["mode"] = "batch"
    return record


def write_csv(path: Path, rows: list[list[Any]], header: list[str] = CSV_HEADER) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def csv_rows(usage: list[UsageEvent], prefix: str = "imp") -> list[list[Any]]:
    return [
        [f"{prefix}-{n}", int(e.unix_time), e.model, e.input_tokens, e.output_tokens, e.input_cached_tokens,
         "batch" if e.batch else "", e.project_id, e.api_key_id]
        for n, e in enumerate(usage)
    ]


def ledger_rows(sessions: sessionmaker[Session], source: str) -> list[tuple[Any, ...]]:
    """One source's buckets, everything but the source and row ids."""
    with sessions() as session:
        buckets = session.scalars(select(UsageBucket).where(UsageBucket.source == source)).all()
    return sorted(
        (b.bucket_start, b.width, b.model, b.mode, b.project, b.feature, b.api_key, b.environment, b.tags,
         b.input_tokens, b.cached_input_tokens, b.output_tokens, b.requests, b.cost_nanos)
        for b in buckets
    )


def test_pull_push_and_import_of_the_same_usage_give_the_same_ledger(
    ledger_context: Context,
    engine: Engine, sessions: sessionmaker[Session], catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    push_writer: PushWriter,
) -> None:
    usage = events()
    monkeypatch.setenv("OPENAI_ADMIN_KEY", "sk-admin")
    with FakeOpenAIUsage(admin_key="sk-admin", events=usage, clock=NOW.timestamp) as api:
        source = Source(name="openai", kind="openai_usage", base_url=api.url, api_key_env="OPENAI_ADMIN_KEY",
                        start=date(2026, 11, 1))
        outcome = pull_one(Context(Settings(sources=[source]), engine, sessions, catalog), source, NOW,
                           retry=RetryPolicy(sleep=lambda s: None))
        assert outcome.ok, outcome.error

    for project in ("web", "etl", "search"):  # the token names the project
        body = b"\n".join(json.dumps(as_response(n, e, "push")).encode() for n, e in enumerate(usage) if e.project_id == project)
        push_writer.push(body, project=project, now=NOW)

    import_file(ledger_context, write_csv(tmp_path / "usage.csv", csv_rows(usage)), now=NOW, chunk_lines=70)
    jsonl = tmp_path / "usage.jsonl"
    jsonl.write_text("".join(json.dumps({**as_response(n, e, "jsonl"), "project": e.project_id}) + "\n" for n, e in enumerate(usage)))
    import_file(ledger_context, jsonl, now=NOW, source="import-jsonl")

    pulled = ledger_rows(sessions, "openai")
    assert pulled and any(row[-1] is None for row in pulled) and any(row[3] == "batch" for row in pulled)
    assert ledger_rows(sessions, "push") == pulled
    assert ledger_rows(sessions, "import") == pulled
    assert ledger_rows(sessions, "import-jsonl") == pulled


def test_csv_import_with_a_column_mapping(ledger_context: Context, sessions: sessionmaker[Session], catalog: Catalog,
                                          tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "gateway.csv",
        [["r1", "2026-11-03T10:05:00Z", MAESTRO, "4000", "1000", "checkout"],
         ["r2", "2026-11-03 10:45:00", MAESTRO, "3000", "1000", "checkout"]],
        header=["request_id", "when", "engine", "tokens_in", "tokens_out", "team"],
    )
    mapping = {"id": "request_id", "timestamp": "when", "model": "engine", "prompt_tokens": "tokens_in",
               "completion_tokens": "tokens_out", "project": "team"}
    result = import_file(ledger_context, path, columns=mapping, now=NOW)

    assert (result.accepted, result.duplicates, result.bad) == (2, 0, 0)
    assert snapshot(sessions, "project") == [("checkout", 7000, 0, 2000, 2, Decimal("0.0129"), 0)]


def test_a_file_with_bad_lines_is_refused_whole_listing_them(
    ledger_context: Context,
    sessions: sessionmaker[Session], catalog: Catalog, tmp_path: Path
) -> None:
    rows = csv_rows(events()[:50])
    rows[9][3] = -4  # negative prompt tokens, line 11 (the header is line 1)
    rows[29][1] = "last tuesday"  # line 31
    rows[39][1] = int((NOW + timedelta(days=3)).timestamp())  # line 41
    path = write_csv(tmp_path / "bad.csv", rows)

    with pytest.raises(IngestRejected) as refused:
        import_file(ledger_context, path, now=NOW, chunk_lines=10)

    assert [line for line, _ in refused.value.errors] == [11, 31, 41]
    assert "negative" in refused.value.errors[0][1] and "unknown time format" in refused.value.errors[1][1]
    assert "future" in refused.value.errors[2][1]
    assert bucket_count(sessions) == 0  # nothing applied, not even the chunks before the first bad line


def test_skip_bad_applies_the_good_lines_and_writes_the_bad_ones(
    ledger_context: Context,
    sessions: sessionmaker[Session], catalog: Catalog, tmp_path: Path
) -> None:
    lines = [json.dumps(response(f"id-{n}")) for n in range(5)]
    lines.insert(2, "{broken")
    lines.insert(4, json.dumps(response("neg", prompt=-1)))
    path = tmp_path / "usage.jsonl"
    path.write_text("\n".join(lines) + "\n\n")
    bad_file = tmp_path / "bad.jsonl"

    result = import_file(ledger_context, path, project="web", skip_bad=bad_file, now=NOW)

    assert (result.accepted, result.bad) == (5, 2)
    assert bad_file.read_text().splitlines() == ["{broken", lines[4]]
    assert snapshot(sessions)[0][1] == 5 * 4000


def test_a_reimport_counts_nothing_twice_and_progress_is_reported(
    ledger_context: Context,
    sessions: sessionmaker[Session], catalog: Catalog, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "usage.csv", csv_rows(events()))
    calls: list[tuple[str, int, int]] = []
    first = import_file(ledger_context, path, now=NOW, chunk_lines=64, on_progress=lambda *a: calls.append(a))
    once = snapshot(sessions, "project")
    again_calls: list[tuple[str, int, int]] = []
    again = import_file(ledger_context, path, now=NOW, chunk_lines=64, on_progress=lambda *a: again_calls.append(a))

    assert (first.accepted, again.accepted, again.duplicates) == (300, 0, 300)
    assert snapshot(sessions, "project") == once
    size = path.stat().st_size
    # A clean new file goes in one pass; a file seen before takes the careful passes, checking first.
    assert {phase for phase, _, _ in calls} == {"importing"} and calls[-1] == ("importing", size, size)
    assert [done for _, done, _ in calls] == sorted(done for _, done, _ in calls)
    assert ("checking", size, size) in again_calls and again_calls[-1] == ("importing", size, size)


def test_a_header_without_required_columns_is_refused(ledger_context: Context, sessions: sessionmaker[Session],
                                                      catalog: Catalog, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "x.csv", [["1", "m"]], header=["id", "model"])
    with pytest.raises(IngestRejected, match="prompt_tokens"):
        import_file(ledger_context, path, now=NOW)
