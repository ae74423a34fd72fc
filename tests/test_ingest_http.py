"""POST /v1/usage through the real server: bearer tokens, NDJSON, duplicates, refusals, limits."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from bot.server import create_server
from db.totals import totals
from jobs.config.context import Context
from jobs.config.settings import Settings
from tests.harness import ServerThread

MODEL = "arcee-ai/maestro-reasoning"  # $0.90 in, $3.30 out per 1M tokens


def record(event_id: str, prompt: int = 3000, completion: int = 1000, **extra) -> dict:  # type: ignore[no-untyped-def]
    return {"id": event_id, "object": "chat.completion", "created": int(time.time()) - 3600, "model": MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "secret answer text"}}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
            **extra}


@pytest.fixture
def app_settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, ingest_tokens="search=tok_search,support=tok_support",
                    max_body_bytes=200_000)


@pytest.fixture
def server(context: Context) -> Iterator[ServerThread]:
    with ServerThread(create_server(context, None)) as running:
        yield running


def push(server: ServerThread, body: str | bytes, token: str | None = "tok_search") -> httpx.Response:
    headers = {"Content-Type": "application/x-ndjson"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(f"{server.url}/v1/usage", content=body, headers=headers, timeout=10)


def ledger(context: Context) -> list:
    with context.sessions() as session:
        return totals(session, None, None, "project")


def test_a_pushed_response_is_costed_and_a_repeat_counted_once(server: ServerThread, context: Context) -> None:
    first = push(server, json.dumps(record("chatcmpl-1", feature="search-api")))
    assert first.status_code == 200 and first.json() == {"accepted": 1, "duplicates": 0}
    again = push(server, json.dumps(record("chatcmpl-1", feature="search-api")))
    assert again.json() == {"accepted": 0, "duplicates": 1}
    [row] = ledger(context)
    assert row.key == "search"  # the token names the project
    assert (row.input_tokens, row.output_tokens) == (3000, 1000)
    assert row.cost == Decimal("0.006")


def test_ndjson_batches_and_a_bad_line_refuses_the_whole_body(server: ServerThread, context: Context) -> None:
    good = "\n".join(json.dumps(record(f"r{i}")) for i in range(3))
    assert push(server, good, token="tok_support").json() == {"accepted": 3, "duplicates": 0}
    bad = "\n".join([json.dumps(record("r10")), "{not json", json.dumps(record("r11", prompt=-5))])
    refused = push(server, bad)
    assert refused.status_code == 422
    lines = {e["line"] for e in refused.json()["errors"]}
    assert lines == {2, 3}
    assert [row.key for row in ledger(context)] == ["support"]  # nothing of the refused body applied


def test_wrong_or_missing_tokens_are_refused(server: ServerThread, context: Context) -> None:
    assert push(server, json.dumps(record("x1")), token="tok_wrong").status_code == 401
    assert push(server, json.dumps(record("x1")), token=None).status_code == 401
    assert httpx.post(f"{server.url}/v1/usage", content=json.dumps(record("x1")),
                      headers={"Authorization": "Basic dG9rX3NlYXJjaA=="}).status_code == 401
    assert ledger(context) == []


def test_oversize_and_malformed_bodies(server: ServerThread, context: Context) -> None:
    huge = "\n".join(json.dumps(record(f"h{i}")) for i in range(1000))  # > 200,000 bytes
    assert push(server, huge).status_code == 413
    for body in ("", "[]", "null", "\x00\xff\xfe", '{"id": "a"}', json.dumps(record("t", prompt=10**20))):
        response = push(server, body)
        assert response.status_code == 422, body
        assert response.json()["errors"]
    assert ledger(context) == []


def test_health_and_metrics(server: ServerThread) -> None:
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok", "database": "ok", "slack": "not configured"}
    push(server, json.dumps(record("m1")))
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'budget_guard_requests_total{endpoint="usage",status="200"} 1' in metrics
    assert "budget_guard_outbox_depth 0" in metrics
    assert 'budget_guard_request_seconds_count{endpoint="usage"} 1' in metrics
