"""POST /v1/traces through the real server: both OTLP encodings, gzip, the attribute names the
instrumentations actually use, skipped and rejected spans, and bodies refused whole."""

from __future__ import annotations

import base64
import gzip
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from google.rpc import status_pb2
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from sqlalchemy import text

from bot.server import create_server
from db.totals import totals
from jobs.config.catalog import build_catalog
from jobs.config.context import Context
from jobs.config.sections import OtlpMapping
from jobs.config.settings import Settings
from jobs.usage import otlp
from tests.harness import ServerThread

MODEL = "arcee-ai/maestro-reasoning"  # $0.90 in, $3.30 out per 1M tokens
CLIENT, INTERNAL = 3, 1


def value(v: Any) -> AnyValue:
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    return AnyValue(string_value=v)


def span(n: int, attributes: dict[str, Any], *, kind: int = CLIENT, end: int | None = None) -> Span:
    end = end if end is not None else (int(time.time()) - 3600) * 10**9
    return Span(trace_id=(n + 1).to_bytes(16, "big"), span_id=(n + 1).to_bytes(8, "big"), name=f"chat {n}",
                kind=kind, start_time_unix_nano=max(end - 10**9, 0), end_time_unix_nano=end,
                attributes=[KeyValue(key=k, value=value(v)) for k, v in attributes.items()])


def chat(n: int, prompt: int = 3000, completion: int = 1000, **extra: Any) -> Span:
    return span(n, {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": MODEL,
                    "gen_ai.response.model": MODEL, "gen_ai.usage.input_tokens": prompt,
                    "gen_ai.usage.output_tokens": completion, **extra})


def export(*spans: Span, resource: dict[str, Any] | None = None) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    for k, v in (resource or {"service.name": "search-api", "deployment.environment.name": "prod"}).items():
        resource_spans.resource.attributes.add(key=k, value=value(v))
    resource_spans.scope_spans.add().spans.extend(spans)
    return request


def otlp_json(request: ExportTraceServiceRequest) -> bytes:
    """OTLP JSON as exporters write it: lowerCamelCase, hex ids (any case), integer enums."""
    payload = json_format.MessageToDict(request, use_integers_for_enums=True)
    for resource_spans in payload.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for item in scope_spans.get("spans", []):
                for key in ("traceId", "spanId"):
                    item[key] = base64.b64decode(item[key]).hex().upper()
    return json.dumps(payload).encode()


@pytest.fixture
def app_settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, ingest_tokens="fallback=tok_otel",
                    otlp={"feature": ["app.feature"]}, otlp_max_body_bytes=100_000)


@pytest.fixture
def server(context: Context) -> Iterator[ServerThread]:
    with ServerThread(create_server(context, None)) as running:
        yield running


def post(server: ServerThread, body: bytes, content_type: str = otlp.PROTOBUF, token: str | None = "tok_otel",
         **headers: str) -> httpx.Response:
    sent = {"Content-Type": content_type, **{k.replace("_", "-"): v for k, v in headers.items()}}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    return httpx.post(f"{server.url}/v1/traces", content=body, headers=sent, timeout=10)


def answer(response: httpx.Response) -> ExportTraceServiceResponse:
    assert response.status_code == 200, response.content
    assert response.headers["content-type"] == otlp.PROTOBUF
    return ExportTraceServiceResponse.FromString(response.content)


def status(response: httpx.Response) -> status_pb2.Status:
    return status_pb2.Status.FromString(response.content)


def ledger(context: Context, by: str = "model") -> list:
    with context.sessions() as session:
        return totals(session, None, None, by)  # type: ignore[arg-type]


def test_protobuf_spans_are_costed_and_a_resent_batch_counts_once(server: ServerThread, context: Context) -> None:
    body = export(chat(1), chat(2, 1000, 500, **{"gen_ai.usage.cache_read.input_tokens": 400})).SerializeToString()
    first = answer(post(server, body))
    assert not first.HasField("partial_success")
    again = answer(post(server, body))  # the exporter retried after losing our answer
    assert not again.HasField("partial_success")
    [row] = ledger(context)
    assert (row.key, row.input_tokens, row.cached_input_tokens, row.output_tokens, row.requests) == (
        MODEL, 4000, 400, 1500, 2)
    assert [(r.key, r.requests) for r in ledger(context, "project")] == [("search-api", 2)]
    assert [r.key for r in ledger(context, "environment")] == ["prod"]
    assert [r.key for r in ledger(context, "source")] == ["otlp"]


def test_json_encoding_and_gzip_give_the_same_records_and_answer_in_kind(server: ServerThread,
                                                                         context: Context) -> None:
    request = export(chat(1), chat(2))
    response = post(server, gzip.compress(otlp_json(request)), otlp.JSON, content_encoding="gzip")
    assert response.status_code == 200 and response.headers["content-type"] == otlp.JSON
    assert response.json() == {}
    resent = answer(post(server, gzip.compress(request.SerializeToString()), content_encoding="gzip"))
    assert not resent.HasField("partial_success")
    [row] = ledger(context)
    assert (row.input_tokens, row.output_tokens, row.requests) == (6000, 2000, 2)  # JSON and protobuf: same ids


def test_the_attribute_names_instrumentations_use(server: ServerThread, context: Context) -> None:
    older_openllmetry = span(1, {"gen_ai.system": "openai", "gen_ai.request.model": MODEL,
                                 "gen_ai.usage.prompt_tokens": 100, "gen_ai.usage.completion_tokens": 10,
                                 "gen_ai.usage.cache_read_input_tokens": 40, "llm.request.type": "chat"})
    openlit = span(2, {"gen_ai.provider.name": "openai", "gen_ai.response.model": MODEL,
                       "gen_ai.usage.input_tokens": 200, "gen_ai.usage.output_tokens": 20,
                       "gen_ai.usage.prompt_tokens_details.cached_tokens": 50, "gen_ai.environment": "staging",
                       "app.feature": "summaries"})
    together_via_openai_sdk = span(3, {"gen_ai.provider.name": "openai", "server.address": "api.together.xyz",
                                       "gen_ai.request.model": "meta-llama/Llama-3.3-70B-Instruct-Turbo",
                                       "gen_ai.usage.input_tokens": 300, "gen_ai.usage.output_tokens": 30})
    groq = span(4, {"gen_ai.provider.name": "groq", "gen_ai.request.model": "deepseek-r1-distill-llama-70b",
                    "gen_ai.usage.input_tokens": 400, "gen_ai.usage.output_tokens": 40})
    request = export(older_openllmetry, openlit, together_via_openai_sdk, groq,
                     resource={"service.name": "unknown_service:python"})
    assert not answer(post(server, request.SerializeToString())).HasField("partial_success")
    rows = {r.key: r for r in ledger(context)}
    assert (rows[MODEL].input_tokens, rows[MODEL].cached_input_tokens, rows[MODEL].output_tokens) == (300, 90, 30)
    assert rows["meta-llama/Llama-3.3-70B-Instruct-Turbo"].cost is not None
    # Alone, the name means DeepSeek's deepseek-reasoner; the span says Groq served it, at Groq's price.
    assert "groq/deepseek-r1-distill-llama-70b" in rows and "deepseek/deepseek-reasoner" not in rows
    assert rows["groq/deepseek-r1-distill-llama-70b"].cost is not None
    assert {r.key for r in ledger(context, "project")} == {"fallback"}  # no service.name set: the token's
    assert {r.key: r.requests for r in ledger(context, "environment")} == {"": 3, "staging": 1}
    assert {r.key: r.requests for r in ledger(context, "feature")} == {"": 3, "summaries": 1}


def test_spans_without_usage_and_in_process_agent_spans_are_skipped(server: ServerThread, context: Context) -> None:
    http = span(1, {"http.request.method": "GET", "url.full": "https://example.com"})
    agent_inside = span(2, {"gen_ai.operation.name": "invoke_agent", "gen_ai.request.model": MODEL,
                            "gen_ai.usage.input_tokens": 3000, "gen_ai.usage.output_tokens": 1000}, kind=INTERNAL)
    remote_agent = span(3, {"gen_ai.operation.name": "invoke_agent", "gen_ai.request.model": MODEL,
                            "gen_ai.usage.input_tokens": 70, "gen_ai.usage.output_tokens": 7}, kind=CLIENT)
    assert not answer(post(server, export(http, agent_inside, chat(4), remote_agent).SerializeToString())
                      ).HasField("partial_success")
    [row] = ledger(context)
    assert (row.input_tokens, row.requests) == (3070, 2)  # the chat inside the agent, and the remote agent


def test_unusable_spans_are_rejected_alone_in_partial_success(server: ServerThread, context: Context) -> None:
    request = export(
        chat(1),
        chat(2, prompt=-5),
        chat(3, completion=10**13),
        span(4, {"gen_ai.usage.input_tokens": 10}),
        chat(5, **{"gen_ai.usage.cache_read.input_tokens": 5000}),
        chat(6, prompt="lots"),  # type: ignore[arg-type]
        span(7, {"gen_ai.request.model": MODEL, "gen_ai.usage.input_tokens": 1}, end=(int(time.time()) + 3 * 86400) * 10**9),
    )
    result = answer(post(server, request.SerializeToString()))
    assert result.partial_success.rejected_spans == 6
    message = result.partial_success.error_message
    for reason in ("gen_ai.usage.input_tokens is negative (-5)", "gen_ai.usage.output_tokens is implausibly large",
                   "no gen_ai.response.model or gen_ai.request.model",
                   "gen_ai.usage.cache_read.input_tokens (5000) exceed gen_ai.usage.input_tokens (3000)"):
        assert reason in message
    assert "(and 1 more)" in message
    [row] = ledger(context)
    assert row.requests == 1  # the one good span


REFUSED = [
    (b"\x00\xff\xfe garbage \x13\x37", otlp.PROTOBUF, None, 400),
    (export(chat(1), chat(2)).SerializeToString()[:-7], otlp.PROTOBUF, None, 400),  # truncated
    (b"hello, world", otlp.PROTOBUF, None, 400),
    (b'{"resourceSpans": [', otlp.JSON, None, 400),
    (b'["not", "an", "object"]', otlp.JSON, None, 400),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz", "spanId": "00"}]}]}]}', otlp.JSON, None, 400),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"kind": {"a": 1}}]}]}]}', otlp.JSON, None, 400),
    (export(chat(1)).SerializeToString(), "text/plain", None, 415),
    (export(chat(1)).SerializeToString(), "", None, 415),
    (export(chat(1)).SerializeToString(), otlp.PROTOBUF, "br", 415),
    (export(chat(1)).SerializeToString(), otlp.PROTOBUF, "gzip", 400),  # says gzip, is not
    (gzip.compress(export(chat(1)).SerializeToString())[:-9], otlp.PROTOBUF, "gzip", 400),
    (gzip.compress(b"\x00" * 200_000), otlp.PROTOBUF, "gzip", 413),  # over the limit once inflated
    (b"\x00" * 100_001, otlp.PROTOBUF, None, 413),
]


def test_bodies_refused_whole_with_an_otlp_status(server: ServerThread, context: Context) -> None:
    for body, content_type, encoding, code in REFUSED:
        response = post(server, body, content_type, **({"content_encoding": encoding} if encoding else {}))
        assert response.status_code == code, (body[:40], content_type, encoding, response.content)
        as_json = content_type == otlp.JSON
        refusal = json_format.Parse(response.content, status_pb2.Status()) if as_json else status(response)
        assert refusal.message and refusal.code in (3, 8)  # INVALID_ARGUMENT, RESOURCE_EXHAUSTED
    assert ledger(context) == []


def test_tokens_are_checked_the_otlp_way(server: ServerThread, context: Context) -> None:
    body = export(chat(1)).SerializeToString()
    for token in ("tok_wrong", None):
        refused = post(server, body, token=token)
        assert refused.status_code == 401 and "OTEL_EXPORTER_OTLP_HEADERS" in status(refused).message
        assert status(refused).code == 16  # UNAUTHENTICATED
    empty = answer(post(server, ExportTraceServiceRequest().SerializeToString()))
    assert not empty.HasField("partial_success")  # an empty request succeeds, as the spec says
    assert ledger(context) == []
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'budget_guard_requests_total{endpoint="traces",status="401"} 2' in metrics


def test_a_ledger_that_cannot_write_answers_503_so_the_exporter_retries(server: ServerThread,
                                                                      context: Context) -> None:
    with context.engine.begin() as connection:
        connection.execute(text("DROP TABLE seen_events"))
    response = post(server, export(chat(1)).SerializeToString())
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert "nothing was applied" in status(response).message
    assert ledger(context) == []


counts = st.one_of(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.floats(allow_nan=True),
                   st.text(max_size=8), st.booleans())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(prompt=0, completion=0, cached="\u00b2", model="", end=0)  # `isdigit()` but not a number int() reads
@example(prompt="--5", completion=0, cached=0, model="", end=0)
@given(prompt=counts, completion=counts, cached=counts, model=st.text(max_size=300),
       end=st.integers(min_value=0, max_value=2**64 - 1))
def test_any_attribute_values_give_a_record_or_a_reason(prompt: Any, completion: Any, cached: Any, model: str,
                                                        end: int) -> None:
    request = export(span(1, {"gen_ai.request.model": model, "gen_ai.usage.input_tokens": prompt,
                              "gen_ai.usage.output_tokens": completion,
                              "gen_ai.usage.cache_read.input_tokens": cached}, end=end))
    request, _ = otlp.decode_request(request.SerializeToString(), otlp.PROTOBUF, None, 10**6)
    settings_ = Settings()
    parsed = otlp.usage_records(request, mapping=OtlpMapping(), catalog=_catalog(settings_), project="p")
    assert len(parsed.records) + len(parsed.rejected) == 1
    for record in parsed.records:
        assert 0 <= record.cached_input_tokens <= record.input_tokens


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=400), as_json=st.booleans(), gzipped=st.booleans())
def test_any_bytes_decode_or_are_refused_with_a_reason(body: bytes, as_json: bool, gzipped: bool) -> None:
    try:
        request, _ = otlp.decode_request(body, otlp.JSON if as_json else otlp.PROTOBUF,
                                         "gzip" if gzipped else None, 10**6)
    except otlp.OtlpError as exc:
        assert exc.status in (400, 413) and exc.message
    else:
        otlp.usage_records(request, mapping=OtlpMapping(), catalog=_catalog(Settings()), project="p")


_catalogs: dict[str, Any] = {}


def _catalog(settings_: Settings) -> Any:
    if "c" not in _catalogs:
        _catalogs["c"] = build_catalog(settings_)
    return _catalogs["c"]

