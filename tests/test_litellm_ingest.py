"""POST /v1/litellm through the real server: the LiteLLM proxy's generic API callback payloads.

`tests/data/litellm_standard_logging_payload.json` is LiteLLM's own example StandardLoggingPayload
(BerriAI/litellm, tests/logging_callback_tests/gcs_pub_sub_body/standard_logging_payload.json, the
payload its logging tests expect), byte for byte; the tests fill in the key metadata a proxy with
virtual keys sends (LiteLLM's docs: logging_spec, StandardLoggingUserAPIKeyMetadata) and send it
the three ways the generic API callback can (docs: observability/generic_api, log_format)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from bot.server import create_server
from db.models import UsageBucket, from_nanos
from db.totals import totals
from jobs.config.catalog import build_catalog
from jobs.config.context import Context
from jobs.config.settings import Settings, given_settings
from jobs.usage.litellm_spend import parse_spend_logs
from jobs.usage.records import IngestRejected
from tests.harness import ServerThread

CATALOG = build_catalog(given_settings())
EXAMPLE = json.loads((Path(__file__).parent / "data" / "litellm_standard_logging_payload.json").read_text())


def payload(call_id: str | None = None, **changes: Any) -> dict[str, Any]:
    """LiteLLM's example as its proxy sends it for a key of team `search` (alias `search-bot`)."""
    body = copy.deepcopy(EXAMPLE)
    body["metadata"].update(user_api_key_team_alias="search", user_api_key_team_id="team-6b4af483",
                            user_api_key_alias="search-bot", user_api_key_hash="47094ea918cdee64",
                            spend_logs_metadata={"feature": "autocomplete"})
    body["request_tags"] = ["env:prod", "nightly"]
    if call_id is not None:
        body["id"] = call_id
    body.update(changes)
    return body


@pytest.fixture
def app_settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, ingest_tokens="gateway=tok_litellm")


@pytest.fixture
def server(context: Context) -> Iterator[ServerThread]:
    with ServerThread(create_server(context, None)) as running:
        yield running


def send(server: ServerThread, body: Any, token: str | None = "tok_litellm") -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}  # what the callback sends, whatever log_format
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(f"{server.url}/v1/litellm", content=content, headers=headers, timeout=10)


def groups(context: Context, by: str) -> dict[str, Any]:
    with context.sessions() as session:
        return {g.key: g for g in totals(session, None, None, by)}  # type: ignore[arg-type]


def reported(context: Context) -> Decimal:
    with context.sessions() as session:
        return from_nanos(session.scalar(select(func.sum(UsageBucket.reported_cost_nanos))))


def test_the_documented_payload_lands_with_its_team_once(server: ServerThread, context: Context) -> None:
    first = send(server, [payload()])
    assert first.status_code == 200 and first.json() == {"accepted": 1, "duplicates": 0, "skipped": 0}
    assert send(server, [payload()]).json() == {"accepted": 0, "duplicates": 1, "skipped": 0}

    [model] = groups(context, "model").values()
    assert (model.key, model.input_tokens, model.output_tokens, model.requests) == ("openai/gpt-4o", 10, 20, 1)
    assert model.cost == Decimal("0.000225")  # our price of 10 in + 20 out on gpt-4o
    assert reported(context) == Decimal("0.000225")  # and LiteLLM's, kept beside it
    assert list(groups(context, "project")) == ["search"]  # the key's team, not the token's project
    assert list(groups(context, "api_key")) == ["search-bot"]
    assert list(groups(context, "feature")) == ["autocomplete"]
    assert list(groups(context, "source")) == ["litellm"]
    with context.sessions() as session:
        assert session.scalar(select(UsageBucket.tags)) == "env=prod,nightly=nightly"


def test_ndjson_and_single_payloads_and_what_is_skipped(server: ServerThread, context: Context) -> None:
    ndjson = "\n".join(json.dumps(payload(f"call-{n}")) for n in range(3)).encode()
    assert send(server, ndjson).json() == {"accepted": 3, "duplicates": 0, "skipped": 0}
    assert send(server, payload("call-single")).json() == {"accepted": 1, "duplicates": 0, "skipped": 0}
    failed = payload("call-failed", status="failure", prompt_tokens=0, completion_tokens=0, response_cost=0)
    cached = payload("call-cached", cache_hit=True, response_cost=0)
    no_team = payload("call-no-team")
    no_team["metadata"] = {"user_api_key_team_alias": None}
    assert send(server, [failed, cached, no_team]).json() == {"accepted": 1, "duplicates": 0, "skipped": 2}
    projects = groups(context, "project")
    assert {k: v.requests for k, v in projects.items()} == {"search": 4, "gateway": 1}  # no team: the token's


BAD = [
    ({"id": None}, "id is missing"),
    ({"prompt_tokens": -10}, "prompt_tokens is negative (-10)"),
    ({"completion_tokens": 10**13}, "completion_tokens is implausibly large"),
    ({"response_cost": -0.5}, "response_cost is negative"),
    ({"response_cost": "a lot"}, "response_cost must be a number"),
    ({"model": None}, "model is missing"),
    ({"endTime": "yesterday"}, "unknown time format"),
    ({"metadata": ["not", "an", "object"]}, "metadata must be an object"),
]


def test_a_bad_payload_refuses_the_whole_body(server: ServerThread, context: Context) -> None:
    for change, reason in BAD:
        bad = payload("call-bad", **change)
        if change.get("id", "") is None:
            del bad["id"]
        response = send(server, [payload("call-good"), bad])
        assert response.status_code == 422
        [error] = response.json()["errors"]
        assert error["entry"] == 2 and reason in error["reason"], (change, error)
    assert groups(context, "model") == {}  # the good payloads were not applied either


def test_refusals_without_a_payload(server: ServerThread, context: Context) -> None:
    assert send(server, [payload()], token="tok_wrong").status_code == 401
    assert send(server, [payload()], token=None).status_code == 401
    for body in (b"", b"{not json", b"\xff\xfe", b"[1, 2]"):
        response = send(server, body)
        assert response.status_code == 422, body
        assert response.json()["errors"]
    assert send(server, b"[]").json() == {"accepted": 0, "duplicates": 0, "skipped": 0}
    assert groups(context, "model") == {}


values = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                   st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
                   st.lists(st.text(max_size=10), max_size=3), st.dictionaries(st.text(max_size=5), st.text(max_size=5),
                                                                               max_size=2))
FIELDS = ("id", "model", "custom_llm_provider", "prompt_tokens", "completion_tokens", "response_cost", "endTime",
          "metadata", "request_tags", "status", "cache_hit", "call_type", "response")


@settings(max_examples=300, deadline=None)
@given(changes=st.dictionaries(st.sampled_from(FIELDS), values, max_size=4))
def test_any_payload_gives_records_or_reasons(changes: dict[str, Any]) -> None:
    body = json.dumps([payload("call-x", **changes)], default=str).encode()
    try:
        parsed = parse_spend_logs(body, catalog=CATALOG, project="p")
    except IngestRejected as exc:
        assert exc.errors and all(reason for _, reason in exc.errors)
    else:
        assert len(parsed.records) + parsed.skipped == 1
        for record in parsed.records:
            assert record.reported_cost_nanos is None or record.reported_cost_nanos >= 0
