"""Budget status for gateways: allow or deny a request from what the last budget check computed.

The check stores each budget's month-to-date spend and forecast (`budget_snapshots`); answering
`GET /v1/budgets/status` is then one small read, however big the ledger. A budget applies to a
request when every key of its scope is one the request gives and matches: the project (the
ingest token's), and `model`, `feature` or `mode` when the caller passes them (a model matches
with or without a provider prefix such as `together_ai/`). A budget scoped by tag never applies
(a request carries no tags here). The answer is deny when an applying budget of the current month
has spend at or over its amount; figures from an earlier month (no check yet this month) are
shown but decide nothing."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from db.engine import dialect_insert
from db.models import BudgetSnapshot, from_nanos, to_nanos
from jobs.budgets.specs import BudgetSpec
from jobs.forecast.projection import Projection

REQUEST_KEYS = ("project", "model", "feature", "mode")


@dataclass(frozen=True)
class Figures:
    """One budget's figures from a check."""

    spec: BudgetSpec
    spent: Decimal
    forecast: Projection | None


def store(session: Session, figures: Iterable[Figures], *, period: str, now: datetime) -> None:
    """Replace the stored figures with this check's (budgets deleted since drop out); an upsert,
    so two checks storing at once both succeed."""
    kept = []
    for f in figures:
        kept.append(f.spec.name)
        values = dict(
            period=period, scope=dict(f.spec.scope), amount=f.spec.amount, on_exceed=f.spec.on_exceed,
            spent_nanos=to_nanos(f.spent),
            forecast_nanos=to_nanos(f.forecast.point) if f.forecast else None,
            low_nanos=to_nanos(f.forecast.low) if f.forecast else None,
            high_nanos=to_nanos(f.forecast.high) if f.forecast else None,
            computed_at=now,
        )
        statement = dialect_insert(session, BudgetSnapshot).values(name=f.spec.name, **values)
        session.execute(statement.on_conflict_do_update(index_elements=["name"], set_=values))
    session.execute(delete(BudgetSnapshot).where(BudgetSnapshot.name.not_in(kept)) if kept else delete(BudgetSnapshot))


def _model_matches(wanted: str, given: str) -> bool:
    return given == wanted or given.endswith("/" + wanted) or wanted.endswith("/" + given)


def applies(scope: dict[str, str], request: dict[str, str]) -> bool:
    """Whether a budget of `scope` covers a request with these attributes."""
    for key, wanted in scope.items():
        given = request.get(key)
        if key not in REQUEST_KEYS or not given:
            return False
        if key == "model" and not _model_matches(wanted, given):
            return False
        if key != "model" and given != wanted:
            return False
    return True


def answer(session: Session, request: dict[str, str], *, now: datetime, zone: ZoneInfo) -> dict[str, Any]:
    """The status document: decision, the budgets that apply with their figures, and why."""
    period = now.astimezone(zone).strftime("%Y-%m")
    budgets, reasons = [], []
    computed = None
    for row in session.scalars(select(BudgetSnapshot).order_by(BudgetSnapshot.name)):
        computed = max(computed, row.computed_at) if computed else row.computed_at
        if not applies(dict(row.scope or {}), request):
            continue
        spent, amount = from_nanos(row.spent_nanos), Decimal(row.amount)
        current = row.period == period
        exceeded = current and spent >= amount
        if exceeded:
            reasons.append(f"budget {row.name}: {spent:,.2f} of {amount:,.2f} USD spent in {row.period}")
        budgets.append({
            "name": row.name,
            "scope": dict(row.scope or {}),
            "period": row.period,
            "current": current,
            "amount": str(amount),
            "spent": str(spent),
            "forecast": str(from_nanos(row.forecast_nanos)) if row.forecast_nanos is not None else None,
            "forecast_low": str(from_nanos(row.low_nanos)) if row.low_nanos is not None else None,
            "forecast_high": str(from_nanos(row.high_nanos)) if row.high_nanos is not None else None,
            "exceeded": exceeded,
            "on_exceed": row.on_exceed,
            "as_of": row.computed_at.isoformat(),
        })
    return {
        "decision": "deny" if reasons else "allow",
        "reasons": reasons,
        "request": request,
        "as_of": computed.isoformat() if computed else None,
        "budgets": budgets,
    }
