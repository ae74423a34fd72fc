"""The HTTP server: Slack events, usage ingest, health and metrics, on Starlette under uvicorn."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any

from slack_bolt import App, BoltRequest
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from bot.metrics import Metrics
from bot.slack_link import NOT_CONFIGURED, REFUSED, SlackLink
from jobs.budgets.status import answer as status_answer
from jobs.config.context import Context
from jobs.config.redaction import redact
from jobs.usage import otlp
from jobs.usage.costing import check_costs
from jobs.usage.ingest import IngestResult
from jobs.usage.litellm_spend import parse_spend_logs
from jobs.usage.push_writer import PushWriter
from jobs.usage.records import IngestRejected

log = logging.getLogger(__name__)


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (BodyTooLarge) anything over `limit` bytes without reading it all."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def too_large(limit: int) -> JSONResponse:
    return JSONResponse({"error": f"request body is larger than {limit:,} bytes"}, status_code=413)


def readable_slack_timestamp(value: str | None) -> bool:
    """Whether X-Slack-Request-Timestamp is Unix seconds at all (Bolt would raise on `abc`)."""
    return value is not None and 0 < len(value) <= 12 and value.isascii() and value.isdigit()


def create_server(context: Context, slack: App | SlackLink | None, metrics: Metrics | None = None) -> Starlette:
    """The ASGI app. `slack` is the Bolt app, or the link that will hold it once Slack is reached;
    ingest, health and metrics work without it."""
    limit = context.settings.max_body_bytes
    metrics = metrics or Metrics()
    link = slack if isinstance(slack, SlackLink) else SlackLink(slack)

    async def slack_events(request: Request) -> Response:
        bolt_app = link.app
        if bolt_app is None:
            if link.state == NOT_CONFIGURED:
                return JSONResponse({"error": "Slack is not configured: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET"},
                                    status_code=503)
            why = "Slack refused the bot token" if link.state == REFUSED else "Slack is not reachable from here yet"
            return JSONResponse({"error": f"{why}; nothing was done", "slack": link.state}, status_code=503,
                                headers={} if link.state == REFUSED else {"Retry-After": "30"})
        if not readable_slack_timestamp(request.headers.get("x-slack-request-timestamp")):
            return JSONResponse({"error": "invalid request: missing or malformed X-Slack-Request-Timestamp"},
                                status_code=401)
        try:
            body = await read_body(request, limit)
        except BodyTooLarge:
            return too_large(limit)
        bolt_request = BoltRequest(
            body=body.decode("utf-8", errors="replace"),
            query=request.url.query,
            headers={k: v for k, v in request.headers.items()},
        )
        with metrics.timer("slack_events"):
            bolt_response = await run_in_threadpool(bolt_app.dispatch, bolt_request)
        return Response(
            status_code=bolt_response.status,
            content=bolt_response.body,
            headers=bolt_response.first_headers_without_set_cookie(),
        )

    writer = PushWriter(context)

    def ingest(body: bytes, project: str) -> IngestResult:
        return writer.push(body, project=project)

    def token_project(request: Request) -> str | None:
        """The project of the request's ingest bearer token, or None."""
        scheme, _, secret = request.headers.get("authorization", "").partition(" ")
        return context.settings.ingest_token_projects().get(secret.strip()) if scheme.lower() == "bearer" else None

        """The project of the request's bearer ingest token, or None if it has none we know."""
        scheme, _, secret = request.headers.get("authorization", "").partition(" ")
        return context.settings.ingest_token_projects().get(secret.strip()) if scheme.lower() == "bearer" else None

    def unauthorized() -> JSONResponse:
        return JSONResponse({"error": "missing or unknown ingest token"}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})

    def ledger_down(what: str, exc: Exception) -> str:
        """Log an ingest the database refused (not the body's fault); the message for the sender."""
        log.error("%s ingest failed: %s", what, type(exc).__name__)
        return "the ledger is unavailable; retry later (nothing was applied)"

    def unavailable(what: str, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": ledger_down(what, exc)}, status_code=503, headers={"Retry-After": "5"})

    async def usage(request: Request) -> Response:
        project = token_project(request)
        if project is None:
            return unauthorized()
        try:
            body = await read_body(request, limit)
        except BodyTooLarge:
            return too_large(limit)
        try:
            with metrics.timer("usage"):
                result = await run_in_threadpool(ingest, body, project)
        except IngestRejected as exc:
            errors = [{"line": line, "reason": reason} for line, reason in exc.errors[:1000]]
            return JSONResponse({"error": "nothing was applied", "errors": errors}, status_code=422)
        except Exception as exc:  # the database is down, say, not the body's fault
            return unavailable("usage", exc)
        return JSONResponse({"accepted": result.accepted, "duplicates": result.duplicates})

    async def budget_status(request: Request) -> Response:
        """Allow or deny for a project (and model, feature, mode), from the last budget check's figures."""
        project = token_project(request)
        if project is None:
            return unauthorized()
        asked = request.query_params.get("project")
        if asked is not None and asked != project:
            return JSONResponse({"error": "this token is for another project; ask with that project's token"},
                                status_code=403)
        query = {key: request.query_params.get(key, "")[:200] for key in ("model", "feature", "mode")}
        wanted = {"project": project, **{k: v for k, v in query.items() if v}}

        def read() -> dict[str, Any]:
            with context.sessions() as session:
                return status_answer(session, wanted, now=datetime.now(timezone.utc), zone=context.settings.zone)

        try:
            return JSONResponse(await run_in_threadpool(read))
        except Exception as exc:
            log.error("budget status failed: %s", type(exc).__name__)
            return JSONResponse({"error": "budget status is unavailable; retry later"}, status_code=503,
                                headers={"Retry-After": "5"})
    otlp_limit = context.settings.otlp_max_body_bytes

    def parse_traces(body: bytes, content_type: str | None, encoding: str | None, project: str,
                     now: datetime) -> otlp.ParsedTraces:
        export, _ = otlp.decode_request(body, content_type, encoding, otlp_limit)
        return otlp.usage_records(export, mapping=context.settings.otlp, catalog=context.catalog,
                                  project=project, now=now)

    async def traces(request: Request) -> Response:
        """OTLP/HTTP: answers in the request's encoding, errors as a google.rpc.Status."""
        as_json = otlp.media_type(request.headers.get("content-type")) == otlp.JSON
        media = otlp.JSON if as_json else otlp.PROTOBUF

        def refuse(status: int, message: str, bad_field: str | None = None,
                   headers: dict[str, str] | None = None) -> Response:
            return Response(otlp.status_body(status, message, as_json, bad_field=bad_field), status_code=status,
                            media_type=media, headers=headers)

        project = token_project(request)
        if project is None:
            return refuse(401, "missing or unknown ingest token: set OTEL_EXPORTER_OTLP_HEADERS="
                               "Authorization=Bearer%20<token>", headers={"WWW-Authenticate": "Bearer"})
        try:
            body = await read_body(request, otlp_limit)
        except BodyTooLarge:
            return refuse(413, f"the request body is larger than {otlp_limit:,} bytes", "body")
        now = datetime.now(timezone.utc)
        with metrics.timer("traces"):
            try:
                parsed = await run_in_threadpool(parse_traces, body, request.headers.get("content-type"),
                                                 request.headers.get("content-encoding"), project, now)
            except otlp.OtlpError as exc:
                return refuse(exc.status, exc.message, "body" if exc.status != 415 else None)
            try:
                if parsed.records:
                    await run_in_threadpool(check_costs, parsed.records, context.catalog)
                    await run_in_threadpool(lambda: writer.write(parsed.records, source="otlp", now=now))
            except IngestRejected as exc:  # a bucket would pass what it holds: the spans' fault, not ours
                return refuse(400, f"nothing was applied: {exc}", "body")
            except Exception as exc:  # the database is down: retryable, and nothing of the request applied
                return refuse(503, ledger_down("traces", exc), headers={"Retry-After": "5"})
        if parsed.rejected:
            log.warning("traces: %d of %d span(s) rejected, first: %s", len(parsed.rejected), parsed.spans,
                        parsed.rejected[0])
        return Response(otlp.export_response(parsed.rejected, as_json), media_type=media)

    async def litellm(request: Request) -> Response:
        """LiteLLM's generic API callback: StandardLoggingPayloads, all or nothing."""
        project = token_project(request)
        if project is None:
            return unauthorized()
        try:
            body = await read_body(request, limit)
        except BodyTooLarge:
            return too_large(limit)
        now = datetime.now(timezone.utc)
        with metrics.timer("litellm"):
            try:
                parsed = await run_in_threadpool(lambda: parse_spend_logs(body, catalog=context.catalog,
                                                                          project=project, now=now))
            except IngestRejected as exc:
                errors = [{"entry": entry, "reason": reason} for entry, reason in exc.errors[:1000]]
                return JSONResponse({"error": "nothing was applied", "errors": errors}, status_code=422)
            try:
                await run_in_threadpool(check_costs, parsed.records, context.catalog)
                result = (await run_in_threadpool(lambda: writer.write(parsed.records, source="litellm", now=now))
                          if parsed.records else IngestResult(0, 0))
            except IngestRejected as exc:  # a bucket would pass what it holds
                errors = [{"entry": entry, "reason": reason} for entry, reason in exc.errors[:1000]]
                return JSONResponse({"error": "nothing was applied", "errors": errors}, status_code=422)
            except Exception as exc:  # the database is down: retryable, nothing applied
                return unavailable("litellm", exc)
        return JSONResponse({"accepted": result.accepted, "duplicates": result.duplicates,
                             "skipped": parsed.skipped})

    async def healthz(request: Request) -> Response:
        def check() -> None:
            with context.engine.connect() as connection:
                connection.execute(text("SELECT 1"))

        # Slack down is "degraded", not unhealthy: the process ingests and answers; restarting it
        # (what an orchestrator does with a failing health check) would not bring Slack back.
        try:
            await run_in_threadpool(check)
        except Exception as exc:
            return JSONResponse({"status": "unhealthy", "database": type(exc).__name__, **link.health()},
                                status_code=503)
        return JSONResponse({"status": "degraded" if link.degraded else "ok", "database": "ok", **link.health()})

    async def metrics_endpoint(request: Request) -> Response:
        text_body = await run_in_threadpool(metrics.render, context)
        text_body = redact(text_body + "".join(line + "\n" for line in link.metrics()))
        return PlainTextResponse(text_body, media_type="text/plain; version=0.0.4")

    def counted(name: str, endpoint: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def wrapper(request: Request) -> Response:
            try:
                response = await endpoint(request)
            except Exception:
                log.exception("%s failed", name)
                metrics.count_request(name, 500)
                return JSONResponse({"error": "internal error; it is logged"}, status_code=500)
            metrics.count_request(name, response.status_code)
            return response

        return wrapper

    routes = [
        Route("/slack/events", counted("slack_events", slack_events), methods=["POST"]),
        Route("/v1/usage", counted("usage", usage), methods=["POST"]),
        Route("/v1/budgets/status", counted("budget_status", budget_status), methods=["GET"]),
        Route("/v1/traces", counted("traces", traces), methods=["POST"]),
        Route("/v1/litellm", counted("litellm", litellm), methods=["POST"]),
        Route("/healthz", counted("healthz", healthz), methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(writer.close)  # after uvicorn drained the requests: commit what is queued

    server = Starlette(routes=routes, lifespan=lifespan)
    server.state.context = context
    server.state.metrics = metrics
    return server

