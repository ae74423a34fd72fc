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


class ChannelMembers:
    """Channel membership as Slack last said it, a yes remembered `ttl` seconds; one per app."""

    def __init__(self, ttl: float = MEMBER_TTL) -> None:
        self._ttl = ttl
        self._seen: dict[tuple[str, str], float] = {}  # (channel, user) -> when Slack last said "member"

    def is_member(self, client: WebClient, channel: str, user: str) -> bool:
        """Whether `user` is in `channel` (conversations.members, paged). If Slack will not say
        (missing scope, a channel the bot cannot see) the answer is no."""
        seen = self._seen.get((channel, user))
        if seen is not None and time.monotonic() - seen < self._ttl:
            return True
        cursor = None
        try:
            for _ in range(MEMBER_PAGES):
                page = client.conversations_members(channel=channel, limit=1000, cursor=cursor)
                if user in (page.get("members") or []):
                    self._seen[(channel, user)] = time.monotonic()
                    return True
                cursor = (page.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    return False
        except SlackApiError as exc:
            log.warning("cannot read the members of %s: %s", channel, exc.response.get("error"))
        return False


def may_change(admins: AdminDirectory, members: ChannelMembers, client: WebClient, channel: str, user: str) -> bool:
    """Acknowledge and Snooze: a budget admin, or a member of the alert's channel. Blocks on
    Slack, so only for work after an ack."""
    if not user:
        return False
    try:
        if admins.confirm(user):
            return True
    except GroupReadError:  # a group of ADMINS could not be read: membership may still answer
        pass
    return members.is_member(client, channel, user)
