"""OTLP/HTTP traces in: every span that carries GenAI usage becomes one usage record.

`POST /v1/traces` takes an `ExportTraceServiceRequest` as binary protobuf
(`Content-Type: application/x-protobuf`) or OTLP JSON (`application/json`: hex trace and span
ids, integer enums), gzip-compressed or not. A span counts when it has a usage attribute:

- input tokens: `gen_ai.usage.input_tokens` (cached input included, as the conventions say),
  else the older `gen_ai.usage.prompt_tokens` (OpenLLMetry before 0.46) or `llm.usage.prompt_tokens`;
- output tokens: `gen_ai.usage.output_tokens`, else `gen_ai.usage.completion_tokens`, `llm.usage.completion_tokens`;
- cached input: `gen_ai.usage.cache_read.input_tokens`, else OpenLLMetry's older
  `gen_ai.usage.cache_read_input_tokens` or OpenLIT's `gen_ai.usage.prompt_tokens_details.cached_tokens`;
- model: `gen_ai.response.model`, else `gen_ai.request.model`;
- provider (so a name another provider also uses is priced as the one that served the call): the
  host in `server.address`, else `gen_ai.provider.name`, else `gen_ai.system`;
- time: the span's end; event id: trace id and span id, so a batch sent again counts once.

Project, feature, environment and API key come from the attributes `Settings.otlp` names (span
first, then resource; by default `service.name` and `deployment.environment.name`); a span with
no project is filed under the ingest token's project. Spans without usage are skipped, and so are
in-process agent and workflow spans (`invoke_agent` or `invoke_workflow`, kind INTERNAL), whose
usage is the sum of the model calls inside them, which are counted themselves.

A body that cannot be decoded is refused whole (400, a `google.rpc.Status`); a span whose usage
is unusable (negative or absurd counts, no model, no time) is rejected alone and counted in the
answer's `partial_success`, while the other spans of the request are recorded.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from google.protobuf import json_format
from google.protobuf.any_pb2 import Any as AnyMessage
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from jobs.config.sections import OtlpMapping
from jobs.usage.providers import ModelNames, model_names, provider_of
from jobs.usage.records import UsageRecord, latest_allowed, validate
from jobs.usage.validation import RecordError
from pricing.catalog import Catalog

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

INPUT_KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.usage.prompt_tokens")
OUTPUT_KEYS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.usage.completion_tokens")
CACHED_KEYS = (
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "gen_ai.usage.prompt_tokens_details.cached_tokens",
)
MODEL_KEYS = ("gen_ai.response.model", "gen_ai.request.model")
PROVIDER_KEYS = ("gen_ai.provider.name", "gen_ai.system")
HOST_KEY = "server.address"
OPERATION_KEY = "gen_ai.operation.name"
USAGE_KEYS = frozenset(INPUT_KEYS + OUTPUT_KEYS)
AGGREGATE_OPERATIONS = frozenset({"invoke_agent", "invoke_workflow"})
SPAN_KIND_INTERNAL = 1
UNKNOWN_SERVICE = "unknown_service"  # the SDK's service.name when the app set none
MAX_MESSAGES = 5  # rejected spans named in partial_success.error_message
FIELD_NAMES = ("prompt_tokens", "completion_tokens", "cached_tokens")


class OtlpError(Exception):
    """A request refused whole: its HTTP status and a message for the sender's logs."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class ParsedTraces:
    """What one export request holds for the ledger."""

    records: list[UsageRecord] = field(default_factory=list)
    spans: int = 0
    skipped: int = 0  # spans without GenAI usage, or aggregates of counted spans
    rejected: list[str] = field(default_factory=list)  # one reason per rejected span


# -- the wire: decoding requests, encoding answers ---------------------------------------------


def media_type(content_type: str | None) -> str:
    """The request's media type, lower case, without parameters ("" when absent)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def decode_request(body: bytes, content_type: str | None, content_encoding: str | None,
                   limit: int) -> tuple[ExportTraceServiceRequest, bool]:
    """The export request in `body`, and whether it came as JSON; OtlpError (400, 413, 415) if not."""
    media = media_type(content_type)
    if media not in (PROTOBUF, JSON):
        raise OtlpError(415, f"Content-Type must be {PROTOBUF} or {JSON}, not {media[:60] or 'missing'}")
    as_json = media == JSON
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "gzip":
        body = gunzip(body, limit)
    elif encoding != "identity":
        raise OtlpError(415, f"Content-Encoding {encoding[:40]!r} is not supported; send gzip or nothing")
    request = ExportTraceServiceRequest()
    if as_json:
        _parse_json(body, request)
    else:
        try:
            request.ParseFromString(body)
        except DecodeError:
            raise OtlpError(400, "the body is not a protobuf ExportTraceServiceRequest "
                                 "(its wire format is corrupt or truncated)") from None
        if body and not request.resource_spans:
            raise OtlpError(400, "the body is not a protobuf ExportTraceServiceRequest (no resource_spans in it)")
    return request, as_json


def gunzip(body: bytes, limit: int) -> bytes:
    """`body` decompressed, refusing (413) more than `limit` bytes of output and (400) broken gzip."""
    out = bytearray()
    data = body
    try:
        while data:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out += inflater.decompress(data, limit + 1 - len(out))
            if len(out) > limit:
                raise OtlpError(413, f"the request is larger than {limit:,} bytes once decompressed")
            if not inflater.eof:
                raise OtlpError(400, "the gzip body is truncated")
            data = inflater.unused_data  # another gzip member follows
    except zlib.error as exc:
        raise OtlpError(400, f"the body is not valid gzip ({exc})") from None
    return bytes(out)


def _parse_json(body: bytes, request: ExportTraceServiceRequest) -> None:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise OtlpError(400, f"the body is not JSON ({str(exc)[:120]})") from None
    except RecursionError:
        raise OtlpError(400, "the body is not JSON an exporter sends (nested past any real span)") from None
    if type(payload) is not dict:
        raise OtlpError(400, "the body must be a JSON object (an ExportTraceServiceRequest)")
    for resource_spans in _list(payload.get("resourceSpans", payload.get("resource_spans"))):
        for scope_spans in _list(_get(resource_spans, "scopeSpans", "scope_spans")):
            for span in _list(_get(scope_spans, "spans")):
                _hex_ids_to_base64(span, ("traceId", "trace_id"), ("spanId", "span_id"),
                                   ("parentSpanId", "parent_span_id"))
                for link in _list(_get(span, "links")):
                    _hex_ids_to_base64(link, ("traceId", "trace_id"), ("spanId", "span_id"))
    try:
        json_format.ParseDict(payload, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError) as exc:
        raise OtlpError(400, f"the body is not an OTLP JSON ExportTraceServiceRequest ({str(exc)[:200]})") from None


def _get(obj: Any, *names: str) -> Any:
    if type(obj) is not dict:
        return None
    for name in names:
        if name in obj:
            return obj[name]
    return None


def _list(value: Any) -> list[Any]:
    return value if type(value) is list else []


def _hex_ids_to_base64(obj: Any, *names: tuple[str, str]) -> None:
    """OTLP JSON writes ids in hex; protobuf's JSON mapping expects base64."""
    if type(obj) is not dict:
        return
    for camel, snake in names:
        for name in (camel, snake):
            value = obj.get(name)
            if type(value) is str and value:
                try:
                    obj[name] = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    raise OtlpError(400, f"{camel} {value[:40]!r} is not hex") from None


def export_response(rejected: list[str], as_json: bool) -> bytes:
    """The ExportTraceServiceResponse: empty on full success, else partial_success naming the rejects."""
    response = ExportTraceServiceResponse()
    if rejected:
        response.partial_success.rejected_spans = len(rejected)
        shown = "; ".join(rejected[:MAX_MESSAGES])
        more = f" (and {len(rejected) - MAX_MESSAGES} more)" if len(rejected) > MAX_MESSAGES else ""
        response.partial_success.error_message = f"{len(rejected)} span(s) not recorded: {shown}{more}"
    return _encode(response, as_json)


RPC_CODES = {400: 3, 401: 16, 413: 8, 415: 3, 503: 14}
"""HTTP status to google.rpc.Code: INVALID_ARGUMENT, UNAUTHENTICATED, RESOURCE_EXHAUSTED, UNAVAILABLE."""


def status_body(http_status: int, message: str, as_json: bool, *, bad_field: str | None = None) -> bytes:
    """A google.rpc.Status, the body OTLP/HTTP gives every 4xx and 5xx answer."""
    status = status_pb2.Status(code=RPC_CODES.get(http_status, 2), message=message)  # 2: UNKNOWN
    if bad_field:
        detail = error_details_pb2.BadRequest()
        detail.field_violations.add(field=bad_field, description=message)
        packed = AnyMessage()
        packed.Pack(detail)
        status.details.append(packed)
    return _encode(status, as_json)


def _encode(message: Any, as_json: bool) -> bytes:
    if as_json:
        return json_format.MessageToJson(message, indent=None).encode()
    return message.SerializeToString()


# -- spans to usage records ------------------------------------------------------------------


DIMENSIONS = ("project", "feature", "environment", "api_key")
BASE_WANTED = USAGE_KEYS | set(CACHED_KEYS + MODEL_KEYS + PROVIDER_KEYS) | {HOST_KEY, OPERATION_KEY}


def usage_records(request: ExportTraceServiceRequest, *, mapping: OtlpMapping, catalog: Catalog,
                  project: str, now: datetime | None = None) -> ParsedTraces:
    """The usage records of the GenAI spans in `request`, and the reason for each rejected span."""
    now = now or datetime.now(timezone.utc)
    latest = latest_allowed(now)
    names = model_names(catalog, now.date())
    mapped = [getattr(mapping, dimension) for dimension in DIMENSIONS]
    dimension_names = {name for candidates in mapped for name in candidates}
    wanted = BASE_WANTED | dimension_names
    parsed = ParsedTraces()
    for resource_spans in request.resource_spans:
        resource = {kv.key: kv.value for kv in resource_spans.resource.attributes}
        from_resource = [_dimension(candidates, {}, resource) for candidates in mapped]
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                parsed.spans += 1
                found: dict[str, Any] = {}
                has_usage = False
                for kv in span.attributes:
                    key = kv.key
                    if key in wanted:
                        found[key] = kv.value
                        if key in USAGE_KEYS:
                            has_usage = True
                if not has_usage:
                    parsed.skipped += 1
                    continue
                if span.kind == SPAN_KIND_INTERNAL and _text(found.get(OPERATION_KEY)) in AGGREGATE_OPERATIONS:
                    parsed.skipped += 1
                    continue
                dimensions = (from_resource if dimension_names.isdisjoint(found)
                              else [_dimension(candidates, found, resource) for candidates in mapped])
                try:
                    parsed.records.append(_record(span, found, dimensions, names, project, latest))
                except RecordError as exc:
                    parsed.rejected.append(f"span {span.trace_id.hex()}/{span.span_id.hex()}: {exc}")
    return parsed


def _record(span: Any, found: dict[str, Any], dimensions: list[str | None], names: ModelNames,
            token_project: str, latest: int) -> UsageRecord:
    trace_id, span_id = span.trace_id, span.span_id
    if len(trace_id) != 16 or len(span_id) != 8 or not any(trace_id) or not any(span_id):
        raise RecordError("its trace_id or span_id is missing or not 16 and 8 bytes")
    input_key, prompt = _first(found, INPUT_KEYS)
    output_key, completion = _first(found, OUTPUT_KEYS)
    cached_key, cached = _first(found, CACHED_KEYS)
    model = _first_text(found, MODEL_KEYS)
    if model is None:
        raise RecordError("it has token usage but no gen_ai.response.model or gen_ai.request.model")
    provider = provider_of(_first_text(found, PROVIDER_KEYS), _text(found.get(HOST_KEY)))
    end = span.end_time_unix_nano or span.start_time_unix_nano
    if not end:
        raise RecordError("it has no end_time_unix_nano")
    project, feature, environment, api_key = dimensions
    try:
        return validate(
            event_id=f"otlp:{trace_id.hex()}{span_id.hex()}",
            created=end // 1_000_000_000,
            timestamp=None,
            model=names(provider, model),
            prompt_tokens=0 if prompt is None else prompt,  # a span may report output tokens alone
            completion_tokens=completion,
            cached_tokens=cached,
            requests=None,
            mode=None,
            project=project or token_project,
            feature=feature,
            api_key=api_key,
            environment=environment,
            tags=None,
            latest=latest,
        )
    except RecordError as exc:
        message = str(exc)
        for field_name, key in zip(FIELD_NAMES, (input_key, output_key, cached_key)):
            if key is not None:
                message = message.replace(field_name, key)
        raise RecordError(message) from None


def _first(found: dict[str, Any], candidates: tuple[str, ...]) -> tuple[str | None, Any]:
    """The first of `candidates` present, and its value as a count."""
    for key in candidates:
        value = found.get(key)
        if value is not None:
            return key, _count(value, key)
    return None, None


def _first_text(found: dict[str, Any], candidates: tuple[str, ...]) -> str | None:
    for key in candidates:
        text = _text(found.get(key))
        if text:
            return text
    return None


def _dimension(candidates: Iterable[str], found: dict[str, Any], resource: dict[str, Any]) -> str | None:
    for name in candidates:
        value = _text(found.get(name))
        if value is None:
            value = _text(resource.get(name))
        if value and not (name == "service.name" and value.startswith(UNKNOWN_SERVICE)):
            return value
    return None


def _text(value: Any) -> str | None:
    """A string attribute's text; None if absent, empty or not a string."""
    if value is None or value.WhichOneof("value") != "string_value":
        return None
    return value.string_value.strip() or None


def _count(value: Any, key: str) -> Any:
    """A token-count attribute as validate() takes it: an int (or float, or digits) as sent."""
    kind = value.WhichOneof("value")
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "string_value":
        try:
            return int(value.string_value)
        except ValueError:
            pass
    raise RecordError(f"{key} must be a whole number, not {_describe(value)}")


def _describe(value: Any) -> str:
    kind = value.WhichOneof("value")
    if kind is None:
        return "empty"
    if kind == "string_value":
        return repr(value.string_value[:40])
    return kind.removesuffix("_value")
