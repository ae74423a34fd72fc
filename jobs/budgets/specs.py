"""Monthly budgets: the TOML file's are the starting set and follow the file; a budget changed
or deleted with Slack's `/budget set|delete` is Slack's from then on, whatever the file says."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import Budget
from db.rollups import DailyRow, DailyUsage
from jobs.config.errors import UserError
from jobs.config.sections import MENTION_RE, MODES, ON_EXCEED, SCOPE_KEYS, BudgetConfig
from jobs.config.settings import Settings
from jobs.forecast import scopes
from pricing.catalog import Catalog, UnknownModel

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
CHANNEL_RE = re.compile(r"^<#([CGD][A-Z0-9]+)(?:\|[^>]*)?>$|^([CGD][A-Z0-9]{6,})$")
SET_EXAMPLE = "/budget set llama-prod 5000 model=llama-3.3-70b project=search thresholds=50,80,100 #alerts"


class BudgetError(UserError):
    """A refused budget change: what was wrong, and an example that works."""

    example = SET_EXAMPLE


@dataclass(frozen=True)
class BudgetSpec:
    """A budget as the check reads it, wherever it was defined."""

    name: str
    amount: Decimal
    scope: dict[str, str]
    thresholds: tuple[int, ...]
    forecast: bool
    channel: str | None
    mention: str | None
    on_exceed: str = "alert"  # or "stop-endpoints": at 100% the dedicated endpoints in scope are stopped

    @property
    def stops_endpoints(self) -> bool:
        return self.on_exceed == "stop-endpoints"

    def matches(self, row: DailyRow) -> bool:
        """Whether a ledger row falls inside this budget's scope."""
        return scopes.in_scope(self.scope, row)

    def describe_scope(self) -> str:
        return scopes.describe(self.scope)


def _spec(row: Budget) -> BudgetSpec:
    return BudgetSpec(row.name, Decimal(row.amount), dict(row.scope or {}), tuple(sorted(row.thresholds or [])),
                      row.forecast, row.channel, row.mention, row.on_exceed or "alert")


class FileBudgetError(ValueError):
    """A budget in the file that cannot be used as written (one line naming budget and field)."""


def file_budgets(settings: Settings, catalog: Catalog, known_models: Callable[[], set[str]]) -> list[BudgetConfig]:
    """The file's budgets with their model resolved as `/budget set` resolves it (so
    "llama-3.3-70b" means the model the ledger records); an unknown model is refused.
    `known_models` is asked only when a budget names a model."""
    resolved = []
    known: set[str] | None = None
    for budget in settings.budgets:
        scope = dict(budget.scope)
        if "model" in scope:
            known = known_models() if known is None else known
            try:
                scope["model"] = resolve_model(scope["model"], catalog, known)
            except BudgetError as exc:
                raise FileBudgetError(f"budgets {budget.name!r}.scope.model: {exc.message}") from None
        resolved.append(budget.model_copy(update={"scope": scope}))
    return resolved


def ledger_models(session: Session) -> set[str]:
    """Every model name the ledger's daily rollups know."""
    return set(session.scalars(select(DailyUsage.model).distinct()))


def sync_from_file(session: Session, settings: Settings, catalog: Catalog, *, now: datetime | None = None) -> None:
    """Make the file's budgets the database's, except those Slack has changed or deleted:
    new ones are added, changed ones updated, ones gone from the file retired."""
    now = now or datetime.now(timezone.utc)
    wanted = {b.name: b for b in file_budgets(settings, catalog, lambda: ledger_models(session))}
    for row in session.scalars(select(Budget).where(Budget.origin == "file")):
        if row.name not in wanted and not row.deleted:
            row.deleted, row.updated_by, row.updated_at = True, "budget-guard.toml", now
    for name, budget in wanted.items():
        row = session.get(Budget, name)
        if row is None:
            row = Budget(name=name, origin="file")
            session.add(row)
        elif row.origin != "file":
            continue
        values = dict(amount=budget.amount, scope=dict(budget.scope), thresholds=list(budget.thresholds),
                      forecast=budget.forecast, channel=budget.channel, mention=budget.mention,
                      on_exceed=budget.on_exceed, deleted=False)
        if any(getattr(row, key) != value for key, value in values.items()):
            for key, value in values.items():
                setattr(row, key, value)
            row.updated_by, row.updated_at = "budget-guard.toml", now
    session.flush()


def current_budgets(session: Session, settings: Settings, catalog: Catalog, *, save_sync: bool = True,
                    now: datetime | None = None) -> list[BudgetSpec]:
    """The budgets in force: the database's after syncing the file; with `save_sync` False
    (a dry run) the sync is undone once read. Two processes syncing at once both succeed."""
    for attempt in range(2):
        try:
            sync_from_file(session, settings, catalog, now=now)
        except IntegrityError:  # another process added the same file budget first: read its rows
            session.rollback()
            if attempt:
                raise
            continue
        break
    specs = active_budgets(session)
    if save_sync:
        session.commit()
    else:
        session.rollback()
    return specs


def active_budgets(session: Session) -> list[BudgetSpec]:
    rows = session.scalars(select(Budget).where(Budget.deleted.is_(False)).order_by(Budget.name))
    return [_spec(row) for row in rows]


def parse_amount(text: str) -> Decimal:
    """`5000`, `$5,000`, `5k`, `12.5k` → Decimal dollars, refusing anything else."""
    raw = text.strip().lstrip("$").replace(",", "").lower()
    multiplier = Decimal(1)
    if raw.endswith(("k", "m")):
        multiplier = Decimal(1000) if raw.endswith("k") else Decimal(1_000_000)
        raw = raw[:-1]
    try:
        amount = Decimal(raw) * multiplier
    except ArithmeticError:  # InvalidOperation, or Overflow for 1e999999999
        raise BudgetError(f"the amount must be dollars like 5000 or 5k, not '{text[:30]}'") from None
    if not amount.is_finite() or amount <= 0:
        raise BudgetError("the amount must be more than $0")
    if amount > Decimal("1e12"):
        raise BudgetError("that amount is implausibly large; budgets are USD per month")
    return amount.quantize(Decimal("0.01"))


def parse_set(words: list[str], catalog: Catalog, known_models: set[str]) -> BudgetConfig:
    """`<name> <amount> [key=value ...] [thresholds=50,80] [#channel] [forecast=off] [mention=@x]
    [on_exceed=stop-endpoints]`."""
    if len(words) < 2:
        raise BudgetError("give a name and a monthly amount")
    name, amount_text, rest = words[0], words[1], words[2:]
    if not NAME_RE.match(name):
        raise BudgetError("a budget name is letters, digits, dots, dashes or underscores (up to 64)")
    amount = parse_amount(amount_text)
    scope: dict[str, str] = {}
    thresholds = [50, 80, 100]
    channel = mention = None
    forecast = True
    on_exceed = "alert"
    for word in rest:
        if m := CHANNEL_RE.match(word):
            channel = m.group(1) or m.group(2)
            continue
        if MENTION_RE.match(word):
            mention = word
            continue
        if re.match(r"^\d{1,4}(,\d{1,4})*%?$", word):
            thresholds = _thresholds(word)
            continue
        key, sep, value = word.partition("=")
        key = key.lower()
        if not sep or not value:
            raise BudgetError(f"could not read '{word[:40]}'; scope is key=value with key one of {', '.join(SCOPE_KEYS)}")
        if key in ("thresholds", "threshold"):
            thresholds = _thresholds(value)
        elif key == "forecast":
            if value.lower() not in {"on", "off", "true", "false", "yes", "no"}:
                raise BudgetError("forecast= takes on or off")
            forecast = value.lower() in {"on", "true", "yes"}
        elif key == "channel":
            m = CHANNEL_RE.match(value)
            if not m:
                raise BudgetError("channel= takes a #channel")
            channel = m.group(1) or m.group(2)
        elif key == "mention":
            if not MENTION_RE.match(value):
                raise BudgetError("mention= takes a @user or @group")
            mention = value
        elif key == "on_exceed":
            if value.lower() not in ON_EXCEED:
                raise BudgetError(f"on_exceed= is one of {', '.join(ON_EXCEED)}")
            on_exceed = value.lower()
        elif key == "model":
            scope["model"] = resolve_model(value, catalog, known_models)
        elif key == "mode":
            if value.lower() not in MODES:
                raise BudgetError(f"mode= is one of {', '.join(MODES)}")
            scope["mode"] = value.lower()
        elif key in SCOPE_KEYS:
            if len(value) > 128:
                raise BudgetError(f"{key}= is too long")
            scope[key] = value
        else:
            raise BudgetError(f"unknown scope '{key[:30]}'; use {', '.join(SCOPE_KEYS)}")
    return BudgetConfig(name=name, amount=amount, scope=scope, thresholds=thresholds, forecast=forecast,
                        channel=channel, mention=mention, on_exceed=on_exceed)


def _thresholds(text: str) -> list[int]:
    try:
        values = sorted({int(v.strip().rstrip("%")) for v in text.split(",") if v.strip()})
    except ValueError:
        raise BudgetError("thresholds are percentages like 50,80,100") from None
    if not values or any(v <= 0 or v > 1000 for v in values):
        raise BudgetError("thresholds are percentages between 1 and 1000, like 50,80,100")
    return values


def resolve_model(name: str, catalog: Catalog, known_models: set[str]) -> str:
    """A model the ledger has seen, or one the catalog knows (forgivingly); else a refusal."""
    if name in known_models:
        return name
    try:
        match = catalog.resolve(name)
    except UnknownModel as exc:
        hint = f"; did you mean {', '.join(exc.suggestions)}?" if exc.suggestions else ""
        raise BudgetError(f"no model called '{name[:60]}'{hint}") from None
    return match.label


def save(session: Session, budget: BudgetConfig, *, user: str, now: datetime | None = None) -> Budget:
    """Create or replace a budget from Slack; it survives restarts and wins over the file."""
    now = now or datetime.now(timezone.utc)
    row = session.get(Budget, budget.name)
    if row is None:
        row = Budget(name=budget.name)
        session.add(row)
    row.amount = budget.amount
    row.scope = dict(budget.scope)
    row.thresholds = list(budget.thresholds)
    row.forecast = budget.forecast
    row.channel = budget.channel
    row.mention = budget.mention
    row.on_exceed = budget.on_exceed
    row.origin = "slack"
    row.deleted = False
    row.updated_by = user
    row.updated_at = now
    session.flush()
    return row


def delete(session: Session, name: str, *, user: str, now: datetime | None = None) -> bool:
    """Mark a budget deleted (kept as Slack's, so the file cannot bring it back); False if there is none."""
    row = session.get(Budget, name)
    if row is None or row.deleted:
        return False
    row.deleted = True
    row.origin = "slack"
    row.updated_by = user
    row.updated_at = now or datetime.now(timezone.utc)
    return True
