"""OTLP trace ingest against our own NDJSON push of the same usage, in one run.

    python benchmarks/otlp_ingest.py [--spans 100000] [--batch 512] [--postgres URL]

Makes `--spans` chat calls' usage, then sends it to `budget-guard serve --no-scheduler` (a fresh
database each time) twice, one batch at a time as an exporter does: as OTLP/HTTP protobuf
ExportTraceServiceRequests of `--batch` spans (the SDK's default batch is 512), each span carrying
what opentelemetry-instrumentation-openai-v2 puts on a chat span, and as NDJSON pushes to
/v1/usage of the same records in batches of the same size. Bodies are built before the clock
starts. Prints spans (records) per second for both and the ratio OTLP / NDJSON (target: at
least 0.5), and checks that each ledger holds every call. Prints figures; asserts nothing."""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue  # noqa: E402

from benchmarks.ingest_push import MODELS, drop_schema, postgres_schema_url, start_server  # noqa: E402

TOKEN = "token-bench"


def calls(count: int, seed: int = 12) -> list[dict]:
    """One chat call's usage each, over the last 24 hours in order."""
    rng = random.Random(seed)
    now = time.time_ns()
    out = []
    for n in range(count):
        end = now - 86_400 * 10**9 + n * (86_400 * 10**9 // count)
        prompt = rng.randrange(50, 6000)
        out.append({"trace": rng.getrandbits(128).to_bytes(16, "big"), "span": rng.getrandbits(64).to_bytes(8, "big"),
                    "end": end, "model": MODELS[n % len(MODELS)], "prompt": prompt,
                    "completion": rng.randrange(5, 1500), "cached": rng.randrange(0, prompt // 2 + 1),
                    "service": ["chat", "search", "summarize", "classify"][n % 4]})
    return out


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    if isinstance(value, list):
        return KeyValue(key=key, value=AnyValue(array_value=ArrayValue(values=[AnyValue(string_value=v) for v in value])))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def otlp_batches(items: list[dict], size: int) -> list[bytes]:
    """ExportTraceServiceRequests as the SDK's exporter sends them: one resource per service."""
    bodies = []
    for start in range(0, len(items), size):
        request = ExportTraceServiceRequest()
        by_service: dict[str, list[dict]] = {}
        for item in items[start:start + size]:
            by_service.setdefault(item["service"], []).append(item)
        for service, group in by_service.items():
            resource_spans = request.resource_spans.add()
            resource_spans.resource.attributes.extend([
                _kv("service.name", service), _kv("deployment.environment.name", "production"),
                _kv("telemetry.sdk.language", "python"), _kv("telemetry.sdk.name", "opentelemetry"),
                _kv("telemetry.sdk.version", "1.45.2")])
            scope = resource_spans.scope_spans.add()
            scope.scope.name = "opentelemetry.instrumentation.openai_v2"
            for item in group:
                span = scope.spans.add(trace_id=item["trace"], span_id=item["span"], name=f"chat {item['model']}",
                                       kind=3, start_time_unix_nano=item["end"] - 800_000_000,
                                       end_time_unix_nano=item["end"])
                span.attributes.extend([
                    _kv("gen_ai.operation.name", "chat"), _kv("gen_ai.provider.name", "openai"),
                    _kv("gen_ai.request.model", item["model"]), _kv("gen_ai.request.temperature", 0.2),
                    _kv("gen_ai.request.max_tokens", 2048), _kv("server.address", "api.together.xyz"),
                    _kv("server.port", 443), _kv("gen_ai.response.model", item["model"]),
                    _kv("gen_ai.response.id", f"chatcmpl-{item['span'].hex()}"),
                    _kv("gen_ai.response.finish_reasons", ["stop"]),
                    _kv("gen_ai.usage.input_tokens", item["prompt"]),
                    _kv("gen_ai.usage.output_tokens", item["completion"]),
                    _kv("gen_ai.usage.cache_read.input_tokens", item["cached"])])
        bodies.append(request.SerializeToString())
    return bodies


def ndjson_batches(items: list[dict], size: int) -> list[bytes]:
    """The same calls as the OpenAI-compatible responses /v1/usage takes."""
    bodies = []
    for start in range(0, len(items), size):
        lines = [json.dumps({
            "id": f"chatcmpl-{item['span'].hex()}", "object": "chat.completion", "created": item["end"] // 10**9,
            "model": item["model"], "feature": item["service"],
            "usage": {"prompt_tokens": item["prompt"], "completion_tokens": item["completion"],
                      "prompt_tokens_details": {"cached_tokens": item["cached"]}},
        }) for item in items[start:start + size]]
        bodies.append("\n".join(lines).encode())
    return bodies


def send(base: str, path: str, content_type: str, bodies: list[bytes]) -> float:
    with httpx.Client(base_url=base, timeout=120, headers={
            "Authorization": f"Bearer {TOKEN}", "Content-Type": content_type}) as client:
        started = time.perf_counter()
        for body in bodies:
            answer = client.post(path, content=body)
            if answer.status_code != 200 or (path == "/v1/traces" and answer.content):
                raise SystemExit(f"{path} failed: {answer.status_code} {answer.content[:300]!r}")
        return time.perf_counter() - started


def recorded(database_url: str) -> int:
    from sqlalchemy import create_engine, func, select

    from db.models import UsageBucket

    engine = create_engine(database_url)
    with engine.connect() as connection:
        total = connection.execute(select(func.sum(UsageBucket.requests))).scalar() or 0
    engine.dispose()
    return int(total)


def run(database_url: str, path: str, content_type: str, bodies: list[bytes], workdir: Path) -> float:
    """Seconds to send `bodies` to a fresh serve on `database_url`."""
    process, base = start_server(database_url, {"bench": TOKEN}, workdir)
    try:
        return send(base, path, content_type, bodies)
    finally:
        process.terminate()
        process.wait(timeout=30)


def compare(engine: str, fresh_url: Callable[[str], str], args: argparse.Namespace, items: list[dict],
            workdir: Path) -> None:
    otlp, ndjson = otlp_batches(items, args.batch), ndjson_batches(items, args.batch)
    n = len(items)
    url = fresh_url("push")
    push_seconds = run(url, "/v1/usage", "application/x-ndjson", ndjson, workdir)
    push_rows = recorded(url)
    url = fresh_url("otlp")
    otlp_seconds = run(url, "/v1/traces", "application/x-protobuf", otlp, workdir)
    otlp_rows = recorded(url)
    print(f"{engine}: {n:,} chat calls, batches of {args.batch} ({len(otlp)} requests each way)")
    print(f"  OTLP protobuf /v1/traces: {otlp_seconds:7.2f} s  {n / otlp_seconds:10,.0f} spans/s   "
          f"(~{sum(map(len, otlp)) / len(otlp) / 1e3:.0f} kB a request; {otlp_rows:,} calls in the ledger)")
    print(f"  NDJSON /v1/usage        : {push_seconds:7.2f} s  {n / push_seconds:10,.0f} records/s "
          f"(~{sum(map(len, ndjson)) / len(ndjson) / 1e3:.0f} kB a request; {push_rows:,} calls in the ledger)")
    print(f"  ratio OTLP / NDJSON     : {push_seconds / otlp_seconds:.2f}  (target: at least 0.5)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--postgres", default=os.environ.get("TEST_DATABASE_URL"),
                        help="also run on this PostgreSQL server (default: TEST_DATABASE_URL)")
    args = parser.parse_args()
    items = calls(args.spans)
    print(f"cpus: {os.cpu_count()}; serve and this client share them")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        compare("SQLite", lambda name: f"sqlite:///{workdir / (name + '.db')}", args, items, workdir)
        if args.postgres:
            schemas: list[str] = []

            def fresh(name: str) -> str:
                schema, url = postgres_schema_url(args.postgres)
                schemas.append(schema)
                return url

            try:
                compare("PostgreSQL", fresh, args, items, workdir)
            finally:
                for schema in schemas:
                    drop_schema(args.postgres, schema)


if __name__ == "__main__":
    main()
