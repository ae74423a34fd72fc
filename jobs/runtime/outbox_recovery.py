"""Whether a post reached Slack, when its sender cannot know: the bot joins a public channel before
its first post there (so the channel's history can be read after a crash), and an uncertain row
is looked for in that history (our message metadata carries the row's key; a chart, its file)
before it is sent again. `Unchecked` says the history cannot be read."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

from db.models import OutboxMessage

log = logging.getLogger(__name__)
# Answers to conversations.history that mean "you may not read this channel" (not "try later").
HISTORY_REFUSALS = frozenset({"not_in_channel", "channel_not_found", "missing_scope", "access_denied"})


class Unchecked(Exception):
    """The channel's history cannot be read, so whether a post arrived cannot be known."""


_joined: dict[tuple[str, str], bool] = {}  # (Web API URL, channel): whether joining worked, per process


def join(client: WebClient, channel: str, *, again: bool = False) -> bool:
    """Join a public channel (conversations.join, once per process) so its history can be read
    after a crash; True if the bot is a member. Best effort: a post does not wait on it."""
    if not channel.startswith("C"):
        return False
    key = (client.base_url, channel)
    if key in _joined and not again:
        return _joined[key]
    try:
        client.conversations_join(channel=channel)
    except SlackApiError as exc:
        error = _error(exc)
        if error == "missing_scope":
            log.warning("cannot join %s: the app lacks the channels:join scope (update it from manifest.yaml); "
                        "after a crash I may be unable to check that channel before posting again", channel)
        if error in ("method_not_supported_for_channel_type", "missing_scope"):  # private; or an old install
            _joined[key] = False
        return False  # archived, gone, a token problem: the post that follows says so
    except (SlackRequestError, OSError, TimeoutError):
        return False
    _joined[key] = True
    return True


def _history(client: WebClient, row: OutboxMessage, channel: str) -> list[dict[str, Any]]:
    """The channel's messages since the row was written; raises Unchecked if the bot may not read
    them even after trying to join."""
    oldest = f"{(row.created_at - timedelta(minutes=1)).timestamp():.6f}"

    def read() -> list[dict[str, Any]]:
        history = client.conversations_history(channel=channel, oldest=oldest, include_all_metadata=True, limit=200)
        return list(history.get("messages", []))

    try:
        return read()
    except SlackApiError as exc:
        if (error := _error(exc)) not in HISTORY_REFUSALS:
            raise  # rate limited or down: the row stays uncertain and is looked at again later
    if join(client, channel, again=True):
        try:
            return read()
        except SlackApiError as exc:
            if (error := _error(exc)) not in HISTORY_REFUSALS:
                raise
    raise Unchecked(error or "history refused")


def _error(exc: SlackApiError) -> str | None:
    response = exc.response
    return response.get("error") if response is not None and isinstance(response.data, dict) else None


def find_posted(client: WebClient, row: OutboxMessage) -> str | None:
    """The ts of a message carrying this row's key in the channel's recent history, if any."""
    for message in _history(client, row, row.channel):
        payload = (message.get("metadata") or {}).get("event_payload") or {}
        if payload.get("key") == row.dedupe_key:
            return str(message["ts"])
    return None


def chart_shared(client: WebClient, row: OutboxMessage, channel: str) -> bool:
    """Whether the row's uploaded file was shared in the channel since the row was written."""
    return any(f.get("id") == row.file_id for m in _history(client, row, channel) for f in m.get("files") or [])
