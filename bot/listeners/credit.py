"""`/budget credit [set|add AMOUNT]`: anyone sees the prepaid runway; admins state the balance or
record a top-up. Registered before `/budget`'s own listener, which it takes these commands from.

Acknowledged at once: a malformed command is answered in the ack (parsing needs no Web API call);
the admin check (which may ask Slack for a user group's members), the write and the runway
follow in a lazy listener and answer through `respond()`."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond

from bot.admins import AdminDirectory, GroupReadError
from bot.listeners.lazy import logged
from bot.views.runway import credit_blocks, credit_text
from jobs.budgets.slack_commands import change_credit
from jobs.config.context import Context
from jobs.forecast.runway import CreditError, current_runway, parse_credit
from pricing.money import usd

log = logging.getLogger(__name__)


def _words(command: dict[str, Any]) -> list[str]:
    return (command.get("text") or "").split()


def is_credit(command: dict[str, Any]) -> bool:
    words = _words(command)
    return bool(words) and words[0].lower() == "credit"


def answer(words: list[str], user_id: str, context: Context, admins: AdminDirectory) -> dict[str, Any]:
    """The ephemeral answer to `/budget credit …` (words after "credit"); a refusal raises CreditError."""
    verb, amount = parse_credit(words)
    changed = None
    if verb != "show":
        assert amount is not None
        try:
            admin = admins.confirm(user_id)
        except GroupReadError as exc:
            raise CreditError(f"I could not check whether you are a budget admin: {exc}; try again in a minute",
                              "/budget credit") from None
        if not admin:
            raise CreditError("only budget admins can change the prepaid balance; ask one of them, or have "
                              "an operator add you to ADMINS", "/budget credit")
        change_credit(context, verb, amount, user=user_id)
        changed = f"Balance set to {usd(amount)} as of now." if verb == "set" else \
            f"Top-up of {usd(amount)} recorded."
    runway = current_runway(context)
    return {"blocks": credit_blocks(runway, changed), "text": credit_text(runway, changed),
            "response_type": "ephemeral"}


def register(app: App, context: Context, admins: AdminDirectory) -> None:
    app_context = context

    def acknowledge(ack: Ack, command: dict[str, Any], context: BoltContext) -> None:
        parse_credit(_words(command)[1:])  # a malformed command raises: Bolt's error handler answers it
        context["credit_parsed"] = True
        ack()

    def work(command: dict[str, Any], respond: Respond, context: BoltContext) -> None:
        if context.get("credit_parsed"):  # else the ack said what was wrong
            respond(**answer(_words(command)[1:], command.get("user_id") or "", app_context, admins))

    app.command("/budget", matchers=[is_credit])(ack=acknowledge, lazy=[logged(work)])
