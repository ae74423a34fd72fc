"""`/budget list|set|delete`: anyone lists; only configured admins change budgets."""

from __future__ import annotations

import logging
import time
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.views.alerts import budget_error_blocks, budget_list_blocks, budget_saved_blocks
from bot.views.blocks import escape
from db.models import Budget
from jobs import budgets as budget_store
from jobs.budget_check import month_spend
from jobs.budgets import BudgetError, BudgetSpec
from jobs.context import Context

log = logging.getLogger(__name__)
USAGE = ("/budget list   |   /budget set NAME AMOUNT [model=… project=… feature=… tag=… mode=…] [50,80,100] [#channel] "
         "[on_exceed=stop-endpoints]   |   /budget delete NAME   |   /budget credit [set|add AMOUNT]")
_group_cache: dict[str, tuple[float, set[str]]] = {}


def is_admin(user_id: str, admins: list[str], client: WebClient) -> bool:
    """A user named in ADMINS, or a member of a user group named there (membership cached 5 min)."""
    if user_id in admins:
        return True
    for group in (a for a in admins if a.startswith("S")):
        cached = _group_cache.get(group)
        if cached is None or time.monotonic() - cached[0] > 300:
            try:
                members = set(client.usergroups_users_list(usergroup=group).get("users", []))
            except SlackApiError as exc:
                log.warning("cannot read user group %s: %s", group, exc.response.get("error"))
                continue
            cached = (time.monotonic(), members)
            _group_cache[group] = cached
        if user_id in cached[1]:
            return True
    return False


def answer(text: str, user_id: str, context: Context, client: WebClient) -> dict[str, Any]:
    """The ephemeral answer to a /budget command."""
    words = text.split()
    verb = words[0].lower() if words else "list"
    try:
        if verb == "list":
            with context.sessions() as session:
                specs = budget_store.current_budgets(session, context.settings, context.catalog)
            blocks = budget_list_blocks(month_spend(context, specs))
            text = f"{len(specs)} budget{'' if len(specs) == 1 else 's'}"
            return {"blocks": blocks, "text": text, "response_type": "ephemeral"}
        if verb not in {"set", "delete"}:
            raise BudgetError(f"unknown action '{verb[:20]}'", USAGE)
        if not is_admin(user_id, context.settings.admins, client):
            raise BudgetError("only budget admins can change budgets; ask one of them, or have an operator add "
                              "you to ADMINS", "/budget list")
        if verb == "delete":
            if len(words) != 2:
                raise BudgetError("name the budget to delete", "/budget delete llama-prod")
            with context.sessions() as session, session.begin():
                budget_store.sync_from_file(session, context.settings, context.catalog)
                if not budget_store.delete(session, words[1], user=user_id):
                    raise BudgetError(f"there is no budget called '{words[1][:64]}'", "/budget list")
            return {"text": f"Budget {words[1]} deleted.", "response_type": "ephemeral"}
        with context.sessions() as session:
            known_models = budget_store.ledger_models(session)
        config = budget_store.parse_set(words[1:], context.catalog, known_models)
        if not config.channel and not context.settings.alert_channel:
            raise BudgetError("name a channel for its alerts (ALERT_CHANNEL is not set, so there is no default)")
        with context.sessions() as session, session.begin():
            budget_store.sync_from_file(session, context.settings, context.catalog)
            created = session.get(Budget, config.name) is None
            budget_store.save(session, config, user=user_id)
        spec = BudgetSpec(config.name, config.amount, dict(config.scope), tuple(config.thresholds), config.forecast,
                          config.channel, config.mention, config.on_exceed)
        return {"blocks": budget_saved_blocks(spec, created), "text": f"Budget {config.name} saved.",
                "response_type": "ephemeral"}
    except BudgetError as exc:
        return {"blocks": budget_error_blocks(exc.message, exc.example),
                "text": escape(f"Sorry, I can't do that: {exc.message}"), "response_type": "ephemeral"}


def register(app: App, context: Context) -> None:
    @app.command("/budget")
    def budget_command(ack: Ack, command: dict[str, Any], client: WebClient) -> None:
        ack(**answer(command.get("text") or "", command.get("user_id") or "", context, client))
