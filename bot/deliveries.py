"""Bolt middleware that lets each Slack delivery through once: an event Slack retries
(`X-Slack-Retry-Num`, the same `event_id`) or an interaction sent again is answered 200 and
dropped, so whatever its listener writes is written once."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import App, BoltRequest, BoltResponse

from jobs.config.context import Context
from jobs.runtime.slack_deliveries import first_delivery

log = logging.getLogger(__name__)
WRITING_COMMANDS = frozenset({"/budget"})  # /costquote writes nothing


def delivery_key(body: dict[str, Any]) -> str | None:
    """What identifies one delivery: the event's id, the interaction's trigger, or None (not deduped)."""
    if body.get("type") == "event_callback" and body.get("event_id"):
        return f"event:{body['event_id']}"
    if body.get("command") in WRITING_COMMANDS and body.get("trigger_id"):
        return f"command:{body['trigger_id']}"
    if body.get("type") and body.get("trigger_id"):  # block_actions, view_submission, shortcuts
        actions = body.get("actions") or [{}]
        return f"interaction:{body['trigger_id']}:{actions[0].get('action_ts', '')}"
    return None


def register(app: App, context: Context) -> None:
    @app.middleware
    def handle_each_delivery_once(request: BoltRequest, body: dict[str, Any], next: Any) -> Any:  # noqa: A002
        key = None if request.lazy_only else delivery_key(body)
        if key is None:
            return next()
        try:
            first = first_delivery(context.sessions, key)
        except Exception as exc:  # the database is down: the listener will say so; do not drop the request
            log.warning("cannot record Slack delivery %s (%s)", key, type(exc).__name__)
            return next()
        if first:
            return next()
        retry = (request.headers.get("x-slack-retry-num") or [None])[0]
        reason = (request.headers.get("x-slack-retry-reason") or [None])[0]
        log.info("Slack delivered %s again (retry %s, %s); it was handled already", key, retry or "-", reason or "-")
        return BoltResponse(status=200, body="")
