"""Which Slack Web API errors no retry will fix, and what each means in words an operator can act on.

Slack answers these with HTTP 200 and `ok: false`; retrying them only repeats the refusal.
Everything not listed (rate limits, 5xx, `internal_error`, a lost connection) is worth retrying."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Scope = Literal["token", "app", "channel", "message"]

# The bot token is not (or no longer) accepted: nothing can be posted anywhere until it is replaced.
TOKEN_ERRORS = frozenset({"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
                          "not_allowed_token_type", "team_access_not_granted", "ekm_access_denied"})
# The app lacks a permission: its configuration, not one channel, needs fixing.
APP_ERRORS = frozenset({"missing_scope", "not_enabled"})
# This channel refuses the bot.
CHANNEL_ERRORS = frozenset({"channel_not_found", "not_in_channel", "is_archived", "restricted_action",
                            "restricted_action_read_only_channel", "restricted_action_thread_only_channel",
                            "restricted_action_non_threadable_channel", "cannot_reply_to_message"})
# This message is malformed: a bug on our side, the same whichever channel it goes to.
MESSAGE_ERRORS = frozenset({"msg_too_long", "invalid_blocks", "invalid_blocks_format", "no_text",
                            "too_many_attachments", "invalid_attachments", "invalid_metadata_format",
                            "invalid_metadata_schema", "metadata_too_large", "metadata_must_be_sent_from_app",
                            "invalid_arguments", "invalid_arg_name", "invalid_form_data", "view_too_large"})
PERMANENT_ERRORS = TOKEN_ERRORS | APP_ERRORS | CHANNEL_ERRORS | MESSAGE_ERRORS

_CHANNEL_WORDS = {
    "channel_not_found": "Slack knows no such channel (it was deleted, or the channel ID is wrong)",
    "not_in_channel": "the bot was removed from it, or it is a private channel the bot was never invited to",
    "is_archived": "the channel is archived",
    "cannot_reply_to_message": "the thread it belongs in does not accept replies",
}
_CHANNEL_FIX = {
    "channel_not_found": "check the channel ID in the settings (ALERT_CHANNEL, DIGEST_CHANNEL, OPS_CHANNEL or the "
                         "budget's channel)",
    "not_in_channel": "invite the bot there with `/invite @budget-guard`",
    "is_archived": "unarchive it, or point the setting that names it at another channel",
}
_MESSAGE_WORDS = {
    "msg_too_long": "its text is longer than Slack allows",
    "invalid_blocks": "its Block Kit blocks break Slack's limits",
    "invalid_blocks_format": "its Block Kit blocks are not valid JSON",
    "no_text": "it has no text",
}


@dataclass(frozen=True)
class Refusal:
    """A permanent refusal: what it concerns (the token, the app, a channel or one message) and its words."""

    error: str
    scope: Scope
    problem: str  # what one notice covers: "token", "app:missing_scope", "channel:C0123" or "message:42"
    words: str  # mrkdwn; a channel appears as <#C0123>, which Slack shows as its name


def is_permanent(error: str | None) -> bool:
    return error in PERMANENT_ERRORS


def refusal(error: str, *, channel: str, row_id: int, what: str, needed: str | None = None) -> Refusal:
    """Words for a permanent `error` met while posting `what` (e.g. "the alert “Budget a: 80% used”") to
    `channel` (outbox row `row_id`). A token problem is a token problem, whatever the channel."""
    retry = f"then run `budget-guard outbox retry {row_id}` to send it"
    if error in TOKEN_ERRORS:
        return Refusal(error, "token", "token",
                       f"Slack no longer accepts the bot token (`{error}`), so I cannot post anything. Install the "
                       f"app again (or restore its token), set the new SLACK_BOT_TOKEN and restart budget-guard; "
                       f"then `budget-guard outbox retry --failed` sends what waited, starting with {what}.")
    if error in APP_ERRORS:
        permission = f"the `{needed}` permission" if needed else "a permission it needs"
        if error == "not_enabled":
            permission = "the Home tab turned on"
        return Refusal(error, "app", f"app:{error}",
                       f"The Slack app lacks {permission} (`{error}`), so I could not send {what}. Update the app "
                       f"from manifest.yaml and reinstall it, {retry}.")
    if error in CHANNEL_ERRORS:
        reason = _CHANNEL_WORDS.get(error, f"the workspace does not let the bot post there (`{error}`)")
        fix = _CHANNEL_FIX.get(error, "ask a workspace admin to allow the bot to post there")
        return Refusal(error, "channel", f"channel:{channel}",
                       f"I cannot post to <#{channel}>: {reason}. {what[:1].upper()}{what[1:]} is waiting; "
                       f"{fix}, {retry}. Later messages to that channel wait the same way.")
    reason = _MESSAGE_WORDS.get(error, f"Slack calls it `{error}`")
    return Refusal(error, "message", f"message:{row_id}",
                   f"Slack refused {what} for <#{channel}>: {reason} (`{error}`). That is a bug in budget-guard, "
                   f"not something to fix in Slack; the message is kept as outbox row {row_id} "
                   f"(`budget-guard outbox --json` shows it). Please report it.")
