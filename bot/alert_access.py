"""Who may press an alert's buttons. Anyone who sees an alert may show its breakdown;
Acknowledge and Snooze change what the team is told, so only members of the channel the
alert was posted in, and budget admins (ADMINS), may press them. Membership is asked of
Slack (conversations.members), so listeners call this after the ack."""

from __future__ import annotations

import logging
import time

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.admins import AdminDirectory, GroupReadError

log = logging.getLogger(__name__)
NOT_YOURS = ("Only members of <#{channel}> and budget admins can {verb} this alert; nothing was changed. "
             "Join the channel, or ask an admin.")
MEMBER_PAGES = 50  # 50,000 members at most: a bigger channel is an admin's to acknowledge
MEMBER_TTL = 300.0
_members: dict[tuple[str, str], float] = {}  # (channel, user) -> when Slack last said "member"


def is_member(client: WebClient, channel: str, user: str) -> bool:
    """Whether `user` is in `channel` (conversations.members, paged); a yes is remembered 5 minutes.
    If Slack will not say (missing scope, a channel the bot cannot see) the answer is no."""
    seen = _members.get((channel, user))
    if seen is not None and time.monotonic() - seen < MEMBER_TTL:
        return True
    cursor = None
    try:
        for _ in range(MEMBER_PAGES):
            page = client.conversations_members(channel=channel, limit=1000, cursor=cursor)
            if user in (page.get("members") or []):
                _members[(channel, user)] = time.monotonic()
                return True
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return False
    except SlackApiError as exc:
        log.warning("cannot read the members of %s: %s", channel, exc.response.get("error"))
    return False


def may_change(admins: AdminDirectory, client: WebClient, channel: str, user: str) -> bool:
    """Acknowledge and Snooze: a budget admin, or a member of the alert's channel. Blocks on
    Slack, so only for work after an ack."""
    if not user:
        return False
    try:
        if admins.confirm(user):
            return True
    except GroupReadError:  # a group of ADMINS could not be read: membership may still answer
        pass
    return is_member(client, channel, user)
