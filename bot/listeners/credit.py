"""`/budget credit [set|add AMOUNT]`: anyone sees the prepaid runway; admins state the balance or
record a top-up. Registered before `/budget`'s own listener, which it takes these commands from.

Acknowledged at once: a malformed command is answered in the ack (parsing needs no Web API call);
the admin check (which may ask Slack for a user group's members), the write and the runway
follow in a lazy listener and answer through `respond()`."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, Respond

from bot.admins import AdminDirectory, GroupReadError
from bot.listeners.lazy import logged
from bot.views.alerts import budget_error_blocks
from bot.views.blocks import escape
from bot.views.runway import credit_blocks, credit_text
from jobs.config.context import Context
from jobs.forecast.runway import CreditError, current_runway, parse_credit, record_credit
from pricing.money import usd

log = logging.getLogger(__name__)


def _words(command: dict[str, Any]) -> list[str]:
    return (command.get("text") or "").split()


def is_credit(command: dict[str, Any]) -> bool:
    words = _words(command)
    return bool(words) and words[0].lower() == "credit"


def refusal(exc: CreditError) -> dict[str, Any]:
    return {"blocks": budget_error_blocks(exc.message, exc.example),
            "text": escape(f"Sorry, I can't do that: {exc.message}"), "response_type": "ephemeral"}


def answer(words: list[str], user_id: str, context: Context, admins: AdminDirectory) -> dict[str, Any]:
    """The ephemeral answer to `/budget credit …` (words after "credit")."""
    try:
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
            with context.sessions() as session, session.begin():
                record_credit(session, context.settings, verb, amount, user=user_id)
            changed = f"Balance set to {usd(amount)} as of now." if verb == "set" else \
                f"Top-up of {usd(amount)} recorded."
        runway = current_runway(context)
        return {"blocks": credit_blocks(runway, changed), "text": credit_text(runway, changed),
                "response_type": "ephemeral"}
    except CreditError as exc:
        return refusal(exc)


def _problem(command: dict[str, Any]) -> CreditError | None:
    try:
        parse_credit(_words(command)[1:])
    except CreditError as exc:
        return exc
    return None


def register(app: App, context: Context, admins: AdminDirectory) -> None:
    def acknowledge(ack: Ack, command: dict[str, Any]) -> None:
        problem = _problem(command)
        if problem is not None:
            ack(**refusal(problem))
        else:
            ack()

    def work(command: dict[str, Any], respond: Respond) -> None:
        if _problem(command) is None:  # else the ack said what was wrong
            respond(**answer(_words(command)[1:], command.get("user_id") or "", context, admins))

    app.command("/budget", matchers=[is_credit])(ack=acknowledge, lazy=[logged(work)])
