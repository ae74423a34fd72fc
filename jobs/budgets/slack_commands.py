"""The work behind `/budget list|set|delete` and `/budget credit set|add`, one function per verb:
each opens its own transactions and raises a `UserError` subclass for a refused change. Who may
change budgets is the caller's to decide."""

from __future__ import annotations

from decimal import Decimal

from db.models import Budget
from jobs.budgets.check import month_spend
from jobs.budgets.specs import (
    BudgetError,
    BudgetSpec,
    current_budgets,
    delete,
    ledger_models,
    parse_set,
    save,
    sync_from_file,
)
from jobs.config.context import Context
from jobs.forecast.runway import record_credit


def budgets_with_spend(context: Context) -> list[tuple[BudgetSpec, Decimal]]:
    """The budgets in force (the file's synced first), each with its spend so far this month."""
    with context.sessions() as session:
        specs = current_budgets(session, context.settings, context.catalog)
    return month_spend(context, specs)


def set_budget(context: Context, words: list[str], *, user: str) -> tuple[BudgetSpec, bool]:
    """Save the budget `words` describe (what follows `set`); returns it and whether it is new."""
    with context.sessions() as session:
        known_models = ledger_models(session)
    config = parse_set(words, context.catalog, known_models)
    if not config.channel and not context.settings.alert_channel:
        raise BudgetError("name a channel for its alerts (ALERT_CHANNEL is not set, so there is no default)")
    with context.sessions() as session, session.begin():
        sync_from_file(session, context.settings, context.catalog)
        created = session.get(Budget, config.name) is None
        save(session, config, user=user)
    spec = BudgetSpec(config.name, config.amount, dict(config.scope), tuple(config.thresholds), config.forecast,
                      config.channel, config.mention, config.on_exceed)
    return spec, created


def delete_budget(context: Context, name: str, *, user: str) -> None:
    """Delete a budget (Slack's from then on, so the file cannot bring it back)."""
    with context.sessions() as session, session.begin():
        sync_from_file(session, context.settings, context.catalog)
        if not delete(session, name, user=user):
            raise BudgetError(f"there is no budget called '{name[:64]}'", "/budget list")


def change_credit(context: Context, verb: str, amount: Decimal, *, user: str) -> None:
    """State the prepaid balance (`set`) or record a top-up (`add`), as of now."""
    with context.sessions() as session, session.begin():
        record_credit(session, context.settings, verb, amount, user=user)
