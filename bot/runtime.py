"""A running `serve` process: the Bolt app, the HTTP server, the scheduler, and a clean stop."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from slack_bolt import App

from bot.admins import AdminDirectory
from bot.app import admin_directory, create_app
from bot.commands.startup import StartupError
from bot.metrics import Metrics
from bot.server import create_server
from bot.slack_link import UNREACHABLE, SlackLink, SlackRefused, SlackUnreachable
from jobs.config.context import Context

log = logging.getLogger("budget_guard.runtime")


@dataclass
class Runtime:
    context: Context
    slack: SlackLink
    metrics: Metrics = field(default_factory=Metrics)
    scheduler: Any = None
    socket_mode: Any = None
    admins: AdminDirectory | None = None
    _stopped: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def start(cls, context: Context, *, scheduler: bool = True) -> "Runtime":
        """Check Slack's settings and token, and connect Socket Mode when it is configured (one
        clear line when a setting is wrong or Slack refuses it), then start the scheduler.

        Slack that cannot be reached is no reason to stop: ingest, health and metrics serve,
        and Slack is tried again in the background (`SlackLink`)."""
        settings = context.settings
        metrics = Metrics()
        runtime = cls(context, SlackLink(), metrics)
        if _slack_configured(settings):
            runtime.admins = admin_directory(context)
            try:
                runtime.slack = SlackLink(runtime.connect_slack())
            except SlackRefused as exc:
                raise StartupError(str(exc)) from None
            except SlackUnreachable as exc:
                runtime.slack = SlackLink(state=UNREACHABLE, detail=str(exc))
                runtime.slack.keep_trying(runtime.connect_slack)
        if scheduler:
            runtime.scheduler = _start_scheduler(context, runtime.metrics, runtime.admins)
        return runtime

    @property
    def bolt_app(self) -> App | None:
        return self.slack.app

    def connect_slack(self) -> App:
        """The Bolt app once Slack accepted the bot token, with Socket Mode connected when it is
        configured; SlackRefused or SlackUnreachable otherwise."""
        settings = self.context.settings
        bolt_app = _bolt_app(self.context, self.metrics, self.admins)
        if settings.slack_app_token:
            self.socket_mode = _connect_socket_mode(bolt_app, settings.slack_app_token.get_secret_value())
            log.info("connected to Slack in Socket Mode")
        if self.admins is not None:
            self.admins.start()  # the admin groups, read now and kept warm
        return bolt_app

    def asgi(self) -> Any:
        return create_server(self.context, self.slack, self.metrics)

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
        """Slack over Socket Mode (connected at start, or once Slack is reachable); ingest, health
        and metrics over HTTP."""
        try:
            self.run_http(host, port)
        finally:
            if self.socket_mode is not None:
                self.socket_mode.close()

    def stop(self) -> None:
        """Stop the scheduler, letting running jobs finish and releasing what they claimed."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.slack.stop()
        if self.admins is not None:
            self.admins.stop()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
        log.info("stopped")


def _slack_configured(settings: Any) -> bool:
    """Whether Slack is to be used; StartupError when its settings cannot work together."""
    token, secret, app_token = settings.slack_bot_token, settings.slack_signing_secret, settings.slack_app_token
    if not (token or secret or app_token):
        return False
    if not token:
        other = "SLACK_APP_TOKEN" if app_token else "SLACK_SIGNING_SECRET"
        raise StartupError(f"SLACK_BOT_TOKEN: not set, but {other} is; Slack needs both")
    if not (secret or app_token):
        raise StartupError("SLACK_SIGNING_SECRET: not set; it verifies Slack's requests over HTTP "
                           "(or set SLACK_APP_TOKEN for Socket Mode)")
    return True


def _bolt_app(context: Context, metrics: Metrics, admins: AdminDirectory | None) -> App:
    """The Bolt app once Slack has accepted the bot token (auth.test)."""
    try:
        with _quiet_slack_logs():
            return create_app(context, metrics=metrics, admins=admins)
    except Exception as exc:  # BoltError from auth.test, or the connection error under it
        where = context.settings.slack_api_url or "https://slack.com/api/"
        reason = _reason(exc)
        if reason in _TOKEN_ERRORS:
            raise SlackRefused(f"SLACK_BOT_TOKEN: Slack did not accept it ({reason})") from None
        raise SlackUnreachable(f"SLACK_API_URL: cannot reach Slack at {where} to check the bot token ({reason})") from None


def _connect_socket_mode(bolt_app: App, app_token: str) -> Any:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    handler = SocketModeHandler(bolt_app, app_token)
    try:
        with _quiet_slack_logs():
            handler.connect()
    except Exception as exc:  # noqa: BLE001 - a refusal or an unreachable Slack is one line
        handler.close()
        reason = _reason(exc)
        if _answered(exc):
            raise SlackRefused(f"SLACK_APP_TOKEN: Slack refused the Socket Mode connection ({reason})") from None
        raise SlackUnreachable(f"cannot reach Slack to open the Socket Mode connection ({reason})") from None
    return handler


@contextmanager
def _quiet_slack_logs() -> Iterator[None]:
    """slack_sdk logs each failed call itself; a failed start-up check is our one line instead."""
    loggers = [logging.getLogger(name) for name in ("slack_sdk", "slack_bolt", "budget_guard.bolt")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _start_scheduler(context: Context, metrics: Metrics, admins: AdminDirectory | None) -> Any:
    from jobs.runtime.scheduler import start_scheduler
    from jobs.schedule import scheduled_jobs

    return start_scheduler(context, scheduled_jobs(context, renderers()), metrics=metrics,
                           publish_home=admin_homes(context, admins))


def command_outbox_policy(context: Context) -> Any:
    """The outbox policy of a one-off command: like serve's, with the admins named by ID (their
    groups are not read) for Home-tab notices."""
    from jobs.runtime.outbox import OutboxPolicy

    return OutboxPolicy.from_settings(context.settings, admin_homes(context, admin_directory(context)))


def admin_homes(context: Context, admins: AdminDirectory | None) -> Any:
    """How an operator notice reaches the admins' Home tabs when there is no OPS_CHANNEL (None: it cannot)."""
    if admins is None:
        return None
    from bot.listeners.home import admin_home_publisher

    return admin_home_publisher(context, admins)


def renderers() -> dict[str, Any]:
    """The views that turn job results into Slack messages."""
    from bot.views.alerts import alert_message
    from bot.views.digest import digest_message

    return {"alert": alert_message, "digest": digest_message}


_TOKEN_ERRORS = ("invalid_auth", "token_revoked", "account_inactive", "not_authed", "token_expired",
                 "not_allowed_token_type")


def _answered(exc: BaseException) -> bool:
    """Whether Slack itself answered with an error (rather than not being reached at all)."""
    seen: BaseException | None = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if response is not None and isinstance(getattr(response, "data", None), dict) and response.get("error"):
            return getattr(response, "status_code", 200) < 500
        if any(marker in str(seen) for marker in _TOKEN_ERRORS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _reason(exc: BaseException) -> str:
    """Slack's error code if there is one in the exception or its causes, else the innermost type."""
    seen: BaseException | None = exc
    innermost = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if response is not None and isinstance(getattr(response, "data", None), dict) and response.get("error"):
            return str(response.get("error"))
        for marker in _TOKEN_ERRORS:
            if marker in str(seen):
                return marker
        innermost = seen
        seen = seen.__cause__ or seen.__context__
    return type(innermost).__name__
