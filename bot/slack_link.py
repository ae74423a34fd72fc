"""Slack as a running `serve` reaches it: the Bolt app once Slack has accepted the bot token,
and where getting there stands, for /slack/events, /healthz and /metrics.

Slack that cannot be reached at start-up does not stop `serve`: usage ingest, health and
metrics come up, and the link keeps trying in the background (1 s, 2 s, 4 s … then every
60 s). A token Slack refuses is final: retrying cannot fix it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

log = logging.getLogger("budget_guard.slack")

NOT_CONFIGURED, CONNECTED, UNREACHABLE, REFUSED = "not configured", "ok", "unreachable", "refused"
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)  # seconds; the last repeats


class SlackRefused(Exception):
    """Slack answered and said no (a revoked or wrong token): one line, and no retrying."""


class SlackUnreachable(Exception):
    """Slack could not be asked (no route, timeout, Slack's 5xx); worth trying again."""


class SlackLink:
    """The Bolt app (None until Slack accepted the token) and the state of reaching Slack."""

    def __init__(self, app: Any = None, state: str | None = None, detail: str = "") -> None:
        self.app = app
        self.state = state or (CONNECTED if app is not None else NOT_CONFIGURED)
        self.detail = detail
        self.since = datetime.now(timezone.utc)
        self.attempts = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def degraded(self) -> bool:
        """Slack is configured but not usable: the process serves everything else."""
        return self.state in (UNREACHABLE, REFUSED)

    def health(self) -> dict[str, str]:
        """What /healthz says about Slack."""
        if not self.degraded:
            return {"slack": self.state}
        return {"slack": self.state, "slack_detail": f"{self.detail} (since {self.since:%Y-%m-%dT%H:%M:%SZ}"
                                                     + (", retrying)" if self.state == UNREACHABLE else ")")}

    def metrics(self) -> list[str]:
        """`budget_guard_slack_up`: 1 connected, 0 configured but not connected (absent: not configured)."""
        if self.state == NOT_CONFIGURED:
            return []
        return ["# TYPE budget_guard_slack_up gauge", f"budget_guard_slack_up {1 if self.state == CONNECTED else 0}"]

    def keep_trying(self, connect: Callable[[], Any], *, delays: tuple[float, ...] = RETRY_DELAYS) -> None:
        """Call `connect()` in a background thread until it returns the app (SlackUnreachable:
        wait and try again; SlackRefused: give up) or `stop()` is called."""

        def attempts() -> None:
            while not self._stop.wait(delays[min(self.attempts, len(delays) - 1)]):
                self.attempts += 1
                try:
                    app = connect()
                except SlackUnreachable as exc:
                    self.detail = str(exc)
                    log.debug("Slack still unreachable (attempt %d): %s", self.attempts, exc)
                    continue
                except SlackRefused as exc:
                    self._set(REFUSED, str(exc))
                    log.error("Slack refused: %s; Slack stays off until serve restarts with a fixed setting", exc)
                    return
                except Exception:  # noqa: BLE001 - a bug must not end the retries silently
                    log.exception("reaching Slack failed unexpectedly; trying again")
                    continue
                self.app = app
                self._set(CONNECTED, "")
                log.info("reached Slack after %d attempt(s); Slack requests are served", self.attempts + 1)
                return

        self._thread = threading.Thread(target=attempts, name="slack-link", daemon=True)
        self._thread.start()

    def _set(self, state: str, detail: str) -> None:
        self.state, self.detail, self.since = state, detail, datetime.now(timezone.utc)

    def stop(self) -> None:
        """Stop trying (at shutdown); a connection attempt under way finishes by its own timeout."""
        self._stop.set()
