"""`/budget list|set|delete`: anyone lists; only configured admins change budgets.

Answered in the ack from the database alone; only when a user group in ADMINS has not been
read from Slack yet does it say it is checking, and answer through `respond()` once it knows.
A refused command raises a `BudgetError`, answered by Bolt's error handler (`bot.views.refusals`)."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond

from bot.admins import AdminDirectory, GroupReadError
from bot.listeners.lazy import logged
from bot.views.alerts import budget_list_blocks, budget_saved_blocks
from jobs.budgets.slack_commands import budgets_with_spend, delete_budget, set_budget
from jobs.budgets.specs import BudgetError
from jobs.config.context import Context
from jobs.config.errors import UserError

log = logging.getLogger(__name__)
USAGE = ("/budget list   |   /budget set NAME AMOUNT [model=… project=… feature=… tag=… mode=…] [50,80,100] [#channel] "
         "[on_exceed=stop-endpoints]   |   /budget delete NAME   |   /budget credit [set|add AMOUNT]")
CHECKING = "Checking with Slack whether you are a budget admin; I'll reply in a moment."


def _verb(text: str) -> str:
    words = text.split()
    return words[0].lower() if words else "list"


def needs_admin(text: str) -> bool:
    return _verb(text) in {"set", "delete"}


def answer(text: str, user_id: str, context: Context, *, admin: bool) -> dict[str, Any]:
    """The ephemeral answer to a /budget command, given whether the user is a budget admin."""
    words = text.split()
    verb = _verb(text)
    if verb == "list":
        spent = budgets_with_spend(context)
        return {"blocks": budget_list_blocks(spent), "text": f"{len(spent)} budget{'' if len(spent) == 1 else 's'}",
                "response_type": "ephemeral"}
    if verb not in {"set", "delete"}:
        raise BudgetError(f"unknown action '{verb[:20]}'", USAGE)
    if not admin:
        raise BudgetError("only budget admins can change budgets; ask one of them, or have an operator add "
                          "you to ADMINS", "/budget list")
    if verb == "delete":
        if len(words) != 2:
            raise BudgetError("name the budget to delete", "/budget delete llama-prod")
        delete_budget(context, words[1], user=user_id)
        return {"text": f"Budget {words[1]} deleted.", "response_type": "ephemeral"}
    spec, created = set_budget(context, words[1:], user=user_id)
    return {"blocks": budget_saved_blocks(spec, created), "text": f"Budget {spec.name} saved.",
            "response_type": "ephemeral"}


def register(app: App, context: Context, admins: AdminDirectory) -> None:
    app_context = context

    def budget_command(ack: Ack, command: dict[str, Any], context: BoltContext) -> None:
        text, user = command.get("text") or "", command.get("user_id") or ""
        admin = admins.is_admin(user) if needs_admin(text) else False
        if admin is None:  # a user group not read yet: never wait on Slack before the ack
            context["admin_check"] = True
            ack(text=CHECKING, response_type="ephemeral")
            return
        ack(**answer(text, user, app_context, admin=admin))

    def answer_after_admin_check(command: dict[str, Any], respond: Respond, context: BoltContext) -> None:
        if not context.get("admin_check"):
            return  # answered in the ack
        text, user = command.get("text") or "", command.get("user_id") or ""
        try:
            admin = admins.confirm(user)
        except GroupReadError as exc:
            raise UserError(f"I could not check whether you are a budget admin: {exc}. Try again in a minute.") \
                from None
        respond(**answer(text, user, app_context, admin=admin))

    app.command("/budget")(ack=budget_command, lazy=[logged(answer_after_admin_check)])
