"""The Bolt app: Slack's side of budget-guard, with every listener registered.

No request waits on the Web API before its 200: the token is checked (auth.test) when the app
is built, admin groups are read in the background, and listeners ack first and do their Slack
work in lazy listeners (`bot.listeners.lazy`)."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_bolt import App, BoltResponse
from slack_sdk import WebClient

from bot import deliveries
from bot.admins import AdminDirectory
from bot.listeners import alerts, budget, credit, guard, home, quote
from bot.metrics import Metrics
from bot.views.refusals import refusal
from jobs.config.context import Context

log = logging.getLogger(__name__)


def web_client(context: Context) -> WebClient:
    """A Web API client for the bot token, pointed at SLACK_API_URL when it is set."""
    settings = context.settings
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    kwargs: dict[str, Any] = {"token": token, "timeout": 10}
    if settings.slack_api_url:
        kwargs["base_url"] = settings.slack_api_url.rstrip("/") + "/"
    return WebClient(**kwargs)


def admin_directory(context: Context, client: WebClient | None = None) -> AdminDirectory:
    """ADMINS, its user groups to be read with the bot token (call `start()` to keep them warm)."""
    return AdminDirectory(context.settings.admins, client or web_client(context),
                          refresh_seconds=context.settings.admin_refresh_seconds)


def _bolt_logger(level: str) -> logging.Logger:
    """Bolt's own logger: warnings and up, unless debugging (at INFO it logs whole request bodies)."""
    logger = logging.getLogger("budget_guard.bolt")
    logger.setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    return logger


def create_app(context: Context, *, metrics: Metrics | None = None, admins: AdminDirectory | None = None) -> App:
    """Build the Bolt app. Signature verification is always on; the token is checked here, once.

    Without `admins`, a directory is made and started here (its thread is a daemon)."""
    settings = context.settings
    if not settings.slack_signing_secret and not settings.slack_app_token:
        raise ValueError("SLACK_SIGNING_SECRET is required for HTTP mode")
    client = web_client(context)
    app = App(
        client=client,
        signing_secret=settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else "",
        # auth.test now, not on the first request (that request would wait on Slack before its ack).
        token_verification_enabled=True,
        request_verification_enabled=True,
        # The ack function's answer is the HTTP response; Web API work runs in lazy listeners.
        process_before_response=True,
        listener_executor=ThreadPoolExecutor(max_workers=16, thread_name_prefix="bolt"),
        logger=_bolt_logger(settings.log_level),
    )
    admins = admins or admin_directory(context, client).start()
    deliveries.register(app, context)
    quote.register(app, context, metrics or Metrics())
    credit.register(app, context, admins)  # before budget: Bolt runs the first listener that matches
    budget.register(app, context, admins)
    alerts.register(app, context, admins)
    guard.register(app, context, admins)
    home.register(app, context, admins)
    home.register_other_events(app)

    @app.error
    def on_error(error: Exception) -> BoltResponse:
        """A user's mistake raised before the ack is the ack's answer; anything else is logged."""
        answer = refusal(error)
        if answer is not None:
            return BoltResponse(status=200, body=answer)
        log.exception("listener failed: %s", type(error).__name__)
        return BoltResponse(status=200, body="Sorry, something went wrong on my side; the error is logged.")

    return app
