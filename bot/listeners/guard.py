"""The Stop endpoint button of an idle-endpoint alert (admins only; Slack confirms first).

Acknowledged at once; the admin check, the stop (`jobs.budgets.guard`, which calls together.ai) and the
edit of the alert follow in a lazy listener. A forged, stale or replayed click changes nothing
and is told so privately; a stop together.ai refused or did not answer is said in the thread."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from slack_bolt import App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.admins import AdminDirectory, GroupReadError
from bot.listeners.lazy import ack_first
from bot.views.actions import STOP_ENDPOINT
from bot.views.alerts import StopAction, already_stopped_text, stop_failed_text, stopped_blocks
from bot.views.blocks import escape
from jobs.budgets.guard import stop_from_alert
from jobs.config.context import Context

log = logging.getLogger(__name__)
REFUSED = "That button does not belong to an idle alert I know; nothing was changed."


def _action(body: dict[str, Any]) -> StopAction | None:
    try:
        return StopAction.model_validate_json(body["actions"][0]["value"])
    except (KeyError, IndexError, TypeError, ValidationError):
        return None


def _where(body: dict[str, Any]) -> tuple[str | None, str | None]:
    message = body.get("message") or {}
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
    return channel, message.get("ts")


def register(app: App, context: Context, admins: AdminDirectory) -> None:
    def stop(body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        action, user = _action(body), (body.get("user") or {}).get("id", "")

        def tell(text: str) -> None:
            respond(text=text, response_type="ephemeral", replace_original=False)

        if action is None:
            tell(REFUSED)
            return
        try:
            admin = admins.confirm(user)
        except GroupReadError as exc:
            tell(f"I could not check whether you are a budget admin ({exc}); nothing was changed. Try again in a minute.")
            return
        if not admin:
            tell("Only budget admins can stop endpoints; nothing was changed. Ask one of them, "
                 "or have an operator add you to ADMINS.")
            return
        outcome = stop_from_alert(context, action.alert_id, action.endpoint, user=user)
        name = outcome.endpoint.name if outcome.endpoint else action.endpoint
        channel, ts = _where(body)
        if outcome.status == "stopped" and outcome.at is not None:
            message = body.get("message") or {}
            try:
                if not (channel and ts):
                    raise LookupError("no message to edit")
                client.chat_update(channel=channel, ts=ts, text=message.get("text") or f"{name} stopped",
                                   blocks=stopped_blocks(message.get("blocks") or [], user, outcome.at, outcome.state))
            except (SlackApiError, LookupError) as exc:
                log.warning("cannot edit the idle alert (%s); telling the clicker", type(exc).__name__)
                tell(f"Stopped {escape(name)}: {escape(outcome.reason)}")
        elif outcome.status == "failed":
            text = stop_failed_text(name, outcome.reason)
            try:
                if not (channel and ts):
                    raise LookupError("no message to reply to")
                client.chat_postMessage(channel=channel, thread_ts=ts, text=text)
            except (SlackApiError, LookupError) as exc:
                log.warning("cannot reply in the alert's thread (%s); telling the clicker", type(exc).__name__)
                tell(text)
        elif outcome.status == "already" and outcome.by and outcome.at:
            tell(already_stopped_text(name, outcome.by, outcome.at))
        elif outcome.endpoint is not None:
            tell(f"{escape(name)}: {escape(outcome.reason)}")
        else:
            tell(escape(outcome.reason[:1].upper() + outcome.reason[1:]))

    ack_first(app.action(STOP_ENDPOINT), stop)
