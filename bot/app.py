"""The Bolt app: Slack's side of budget-guard, with every listener registered."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_bolt import App, BoltResponse
from slack_sdk import WebClient

from bot.listeners import alerts, budget, credit, guard, home, quote
from bot.metrics import Metrics
from jobs.context import Context

log = logging.getLogger(__name__)
LISTENER_MODULES = [quote, credit, budget, alerts, guard, home]  # credit takes `/budget credit` before budget


def web_client(context: Context) -> WebClient:
    """A Web API client for the bot token, pointed at SLACK_API_URL when it is set."""
    settings = context.settings
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    kwargs: dict[str, Any] = {"token": token, "timeout": 10}
    if settings.slack_api_url:
        kwargs["base_url"] = settings.slack_api_url.rstrip("/") + "/"
    return WebClient(**kwargs)


def _bolt_logger(level: str) -> logging.Logger:
    """Bolt's own logger: warnings and up, unless debugging (at INFO it logs whole request bodies)."""
    logger = logging.getLogger("budget_guard.bolt")
    logger.setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    return logger


def create_app(context: Context, *, verify_token: bool = True, metrics: Metrics | None = None) -> App:
    """Build the Bolt app. Signature verification is always on."""
    settings = context.settings
    if not settings.slack_signing_secret and not settings.slack_app_token:
        raise ValueError("SLACK_SIGNING_SECRET is required for HTTP mode")
    app = App(
        client=web_client(context),
        signing_secret=settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else "",
        token_verification_enabled=verify_token,
        request_verification_enabled=True,
        # Listeners run in our worker thread and ack fast; slow work goes to lazy listeners.
        process_before_response=True,
        listener_executor=ThreadPoolExecutor(max_workers=16, thread_name_prefix="bolt"),
        logger=_bolt_logger(settings.log_level),
    )
    for module in LISTENER_MODULES:
        module.register(app, context)
    quote.register_timing(app, metrics or Metrics())

    @app.error
    def on_error(error: Exception, body: dict[str, Any], logger: logging.Logger) -> BoltResponse:
        log.exception("listener failed: %s", type(error).__name__)
        return BoltResponse(status=200, body="Sorry, something went wrong on my side; the error is logged.")

    return app
