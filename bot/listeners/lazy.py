"""Acknowledge first, work after: the shape of every listener that calls the Web API.

Slack shows the user an error if its request is not answered within 3 seconds, and a Web API
call can take longer than that (the client waits up to 10 s). So a listener acks at once and
does its Slack work in a Bolt lazy listener, which runs in Bolt's executor after the 200 went
out. A listener that can answer from the database alone (a quote, `/budget list`) answers in
the ack; nothing before the ack calls the Web API.

    ack_first(app.action(ACKNOWLEDGE), acknowledge_alert)
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack

from bot.views.refusals import refusal

log = logging.getLogger(__name__)


def ack_at_once(ack: Ack) -> None:
    """An empty 200: Slack needs nothing more from a click or an event."""
    ack()


def logged(work: Callable[..., None]) -> Callable[..., None]:
    """Work run after the ack: a user's mistake it raises is answered through `respond()` (as Bolt's
    error handler answers one raised before the ack); any other failure is logged whole (Bolt
    logs one line only)."""

    @functools.wraps(work)
    def run(**kwargs: Any) -> None:
        try:
            work(**kwargs)
        except Exception as exc:
            answer, respond = refusal(exc), kwargs.get("respond")
            if answer is None or respond is None:
                log.exception("%s failed after its ack", work.__name__)
            else:
                respond(**answer)

    return run


def ack_first(listen: Callable[..., Any], *work: Callable[..., None]) -> None:
    """Register `work` for a listener (`app.action(...)`, `app.event(...)`) that acks at once."""
    listen(ack=ack_at_once, lazy=[logged(w) for w in work])
