"""Real clients end to end: the `openai` SDK instrumented by opentelemetry-instrumentation-openai-v2,
its spans batched by the OpenTelemetry SDK and sent by the OTLP/HTTP protobuf exporter to a real
`budget-guard serve`, configured only by the OTEL_EXPORTER_OTLP_* lines the README gives. A proxy in
front of serve loses one answer after serve applied it and refuses another with 503, so the
exporter's own retries re-send batches; the ledger must hold exactly the tokens the provider
returned, each call once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.orm import Session, sessionmaker

from db.totals import totals
from tests.fakes.chat_api import FakeChatAPI, ForwardingProxy
from tests.processes import ServeProcess

MODEL = "meta-llama/Llama-3.3-70B-Instruct-Turbo"
CALLS = 10


@pytest.fixture
def serve(database_url: str, tmp_path: Path) -> Iterator[ServeProcess]:
    env = {"DATABASE_URL": database_url, "INGEST_TOKENS": "fallback=tok_otel", "LOG_LEVEL": "WARNING"}
    with ServeProcess(env, tmp_path, "--no-scheduler") as process:
        yield process


def test_openai_sdk_spans_through_the_otlp_exporter_are_recorded_once_with_the_providers_tokens(
        serve: ServeProcess, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeChatAPI() as provider, ForwardingProxy(serve.url) as proxy:
        # The README's three lines, as an app's environment.
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", proxy.origin)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "Authorization=Bearer%20tok_otel")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        proxy.lose_answer_next("/v1/traces")                        # serve applied it; the exporter never heard
        proxy.fail_next("/v1/traces", status=503, retry_after=0)    # the next attempt: come back later

        tracer_provider = TracerProvider(resource=Resource.create(
            {"service.name": "search-api", "deployment.environment.name": "production"}))
        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(), max_export_batch_size=4))
        spans = InMemorySpanExporter()  # what the instrumentation put on the spans, to compare
        tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
        instrumentor = OpenAIInstrumentor()
        instrumentor.instrument(tracer_provider=tracer_provider)
        try:
            client = openai.OpenAI(base_url=provider.url, api_key=provider.api_key, max_retries=0)
            for n in range(CALLS):
                client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": f"question {n}"}])
            assert tracer_provider.force_flush(30_000)
        finally:
            instrumentor.uninstrument()
            tracer_provider.shutdown()

        exports = [r for r in proxy.requests if r.path == "/v1/traces"]
    served = provider.served
    assert len(served) == CALLS
    assert len(exports) >= 3 + 2  # three batches of at most four spans, two of them sent twice
    assert all(r.header("Content-Type") == "application/x-protobuf" for r in exports)

    with sessions() as session:
        [row] = totals(session, None, None, "model")
        [project] = totals(session, None, None, "project")
        [environment] = totals(session, None, None, "environment")
        [source] = totals(session, None, None, "source")
    assert row.key == MODEL
    assert row.input_tokens == sum(u["prompt_tokens"] for u in served)
    assert row.output_tokens == sum(u["completion_tokens"] for u in served)
    # This instrumentation puts no cache_read attribute on chat spans (only on Responses API spans),
    # so the ledger can hold only what the spans carry: none for these calls.
    attributes = [span.attributes or {} for span in spans.get_finished_spans()]
    assert row.cached_input_tokens == sum(a.get("gen_ai.usage.cache_read.input_tokens", 0) for a in attributes)
    assert sum(a.get("gen_ai.usage.input_tokens", 0) for a in attributes) == row.input_tokens
    assert row.requests == CALLS  # once each, though batches arrived twice
    assert row.cost is not None and row.cost > 0
    assert (project.key, environment.key, source.key) == ("search-api", "production", "otlp")
    assert "Traceback" not in serve.log()
