"""A running `serve` process: the Bolt app, the HTTP server, the scheduler, and a clean stop."""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from slack_bolt import App

from bot.app import create_app
from bot.commands.startup import StartupError
from bot.metrics import Metrics
from bot.server import create_server
from jobs.context import Context

log = logging.getLogger("budget_guard.runtime")


@dataclass
class Runtime:
    context: Context
    bolt_app: App | None
    metrics: Metrics = field(default_factory=Metrics)
    scheduler: Any = None
    _stopped: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def start(cls, context: Context, *, scheduler: bool = True) -> "Runtime":
        """Check Slack's token (one clear line if refused), then start the scheduler."""
        settings = context.settings
        bolt_app = None
        metrics = Metrics()
        if settings.slack_bot_token and (settings.slack_signing_secret or settings.slack_app_token):
            try:
                bolt_app = create_app(context, metrics=metrics)
            except Exception as exc:  # BoltError or a connection error from auth.test
                raise StartupError(f"SLACK_BOT_TOKEN: Slack did not accept it ({_reason(exc)})") from None
        else:
            log.warning("Slack is not configured (SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET); serving ingest and health only")
        runtime = cls(context, bolt_app, metrics)
        if scheduler:
            runtime.scheduler = _start_scheduler(context, runtime.metrics)
        return runtime

    def asgi(self) -> Any:
        return create_server(self.context, self.bolt_app, self.metrics)

    def run_http(self, host: str, port: int) -> None:
        """Serve until SIGTERM or SIGINT; uvicorn finishes in-flight requests before returning."""
        config = uvicorn.Config(self.asgi(), host=host, port=port, log_config=None, access_log=False,
                                timeout_graceful_shutdown=20)
        log.info("serving HTTP on %s:%s", host, port)
        # uvicorn re-raises the signal that stopped it once it has drained; with these handlers in
        # place that re-raise returns here, so stop() can finish jobs and release claims.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda number, frame: log.info("signal %s: stopping", number))
        uvicorn.Server(config).run()

    def run_socket_mode(self, host: str, port: int) -> None:
        """Slack over Socket Mode; ingest, health and metrics still over HTTP."""
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        assert self.bolt_app is not None and self.context.settings.slack_app_token is not None
        handler = SocketModeHandler(self.bolt_app, self.context.settings.slack_app_token.get_secret_value())
        handler.connect()
        log.info("connected to Slack in Socket Mode")
        try:
            self.run_http(host, port)
        finally:
            handler.close()

    def stop(self) -> None:
        """Stop the scheduler, letting running jobs finish and releasing what they claimed."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
        log.info("stopped")


def _start_scheduler(context: Context, metrics: Metrics) -> Any:
    from jobs.scheduler import start_scheduler

    return start_scheduler(context, metrics=metrics, renderers=renderers())


def renderers() -> dict[str, Any]:
    """The views that turn job results into Slack messages."""
    from bot.views.alerts import alert_message

    found: dict[str, Any] = {"alert": alert_message}
    try:
        from bot.views.digest import digest_message
    except ModuleNotFoundError:
        return found
    found["digest"] = digest_message
    return found


def _reason(exc: Exception) -> str:
    text = str(exc)
    for marker in ("invalid_auth", "token_revoked", "account_inactive", "not_authed", "token_expired"):
        if marker in text:
            return marker
    return type(exc).__name__
