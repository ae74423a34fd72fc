"""Alert buttons: Acknowledge, Snooze for a day, Show breakdown. Each click is acknowledged at
once; the change, the message update and the breakdown follow (see `bot.listeners.lazy`).
Who may press which: `bot.alert_access`."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from slack_bolt import App, Respond
from slack_sdk import WebClient

from bot.admins import AdminDirectory
from bot.alert_access import NOT_YOURS, ChannelMembers, may_change
from bot.listeners.lazy import ack_first
from bot.views.actions import ACKNOWLEDGE, BREAKDOWN, SNOOZE
from bot.views.alerts import AlertAction, acknowledged_blocks, breakdown_blocks
from jobs.budgets.check import acknowledge, alert_channel, breakdown, snooze
from jobs.config.context import Context

log = logging.getLogger(__name__)
REFUSED = "That button does not belong to an alert I know; nothing was changed."


def _action(body: dict[str, Any]) -> AlertAction | None:
    try:
        return AlertAction.model_validate_json(body["actions"][0]["value"])
    except (KeyError, IndexError, TypeError, ValidationError):
        return None


def _update_message(client: WebClient, body: dict[str, Any], user: str, what: str) -> None:
    message = body.get("message") or {}
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
    if channel and message.get("ts"):
        client.chat_update(channel=channel, ts=message["ts"], text=message.get("text") or what,
                           blocks=acknowledged_blocks(message.get("blocks") or [], user, what))


def register(app: App, context: Context, admins: AdminDirectory) -> None:
    members = ChannelMembers()

    def permitted(action: AlertAction | None, user: str, verb: str, client: WebClient, respond: Respond) -> bool:
        """Is this a known alert, and may `user` change it? Refusals answer ephemerally."""
        channel = alert_channel(context, action.alert_id, action.budget) if action is not None else None
        if channel is None:
            respond(text=REFUSED, response_type="ephemeral", replace_original=False)
            return False
        if not may_change(admins, members, client, channel, user):
            respond(text=NOT_YOURS.format(channel=channel, verb=verb), response_type="ephemeral",
                    replace_original=False)
            return False
        return True

    def acknowledge_alert(body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        action, user = _action(body), body.get("user", {}).get("id", "")
        if not permitted(action, user, "acknowledge", client, respond):
            return
        assert action is not None
        if acknowledge(context, action.alert_id, action.budget, user) is None:
            respond(text=REFUSED, response_type="ephemeral", replace_original=False)
            return
        _update_message(client, body, user, "Acknowledged")

    def snooze_alert(body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        action, user = _action(body), body.get("user", {}).get("id", "")
        if not permitted(action, user, "snooze", client, respond):
            return
        assert action is not None
        if snooze(context, action.alert_id, action.budget, user) is None:
            respond(text=REFUSED, response_type="ephemeral", replace_original=False)
            return
        _update_message(client, body, user, "Snoozed for a day")

    def show_breakdown(body: dict[str, Any], respond: Respond) -> None:
        action = _action(body)
        result = breakdown(context, action.alert_id, action.budget) if action is not None else None
        if action is None or result is None:
            respond(text=REFUSED, response_type="ephemeral", replace_original=False)
            return
        rows, total = result
        respond(blocks=breakdown_blocks(f"{action.budget}: this month by model and dimension", rows, total),
                text=f"{action.budget} breakdown", response_type="ephemeral", replace_original=False)

    ack_first(app.action(ACKNOWLEDGE), acknowledge_alert)
    ack_first(app.action(SNOOZE), snooze_alert)
    ack_first(app.action(BREAKDOWN), show_breakdown)
