"""Prepaid runway: the day a prepaid balance reaches $0 at the forecast pace, with its 80% range.

The balance is the one stated last, in `[prepaid]` of budget-guard.toml (as of the start of
`since`, a local day in TZ) or with `/budget credit set` (as of that moment), plus the top-ups
recorded at or after it (`[[prepaid.topups]]`, from the start of their day; `/budget credit add`,
from that moment), less the ledger's spend since: every bucket that ends after the balance was
stated, so the hour it was stated in counts whole (a runway errs short, not long).

The days ahead are the month-end forecast's expected spend per day (`jobs.forecast.projection`: weekday
shape, prices in effect on each day), today's remaining part first. Past the month's end each
weekday repeats its latest figure, the forecast's where the month still has that weekday ahead,
else the one last spent. The 80% range scales that spend by the month forecast's interval: its
high end empties the balance earliest, its low end latest. Top-ups dated ahead are added on
their day. Unpriced usage is not spend here (it is counted and said)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, and_, cast, func, or_, select
from sqlalchemy.orm import Session

from db.models import PrepaidEntry, UsageBucket, from_nanos
from jobs.config.context import Context
from jobs.config.errors import UserError
from jobs.config.sections import MAX_PREPAID
from jobs.config.settings import Settings
from jobs.forecast.projection import Projection
from pricing.money import usd

ALERT_BUDGET = "prepaid:balance"  # the `budget` of runway alerts (no budget name has a colon)
HORIZON_DAYS = 366  # a balance that lasts longer than this "lasts more than a year"
FILE = "budget-guard.toml"
CREDIT_EXAMPLE = "/budget credit set 500   |   /budget credit add 200   |   /budget credit"


class CreditError(UserError):
    """A refused `/budget credit` change: what was wrong, and an example that works."""

    example = CREDIT_EXAMPLE


@dataclass(frozen=True)
class Credit:
    """Money put on the balance at a moment: the stated balance or a top-up."""

    at: datetime
    amount: Decimal
    by: str  # a Slack user ID, or budget-guard.toml


@dataclass(frozen=True)
class PrepaidState:
    """The balance stated last and the top-ups at or after it (those dated ahead included)."""

    stated: Credit
    topups: tuple[Credit, ...] = ()

    def topped_up(self, now: datetime) -> Decimal:
        return sum((t.amount for t in self.topups if t.at <= now), Decimal(0))

    def scheduled(self, now: datetime) -> tuple[Credit, ...]:
        return tuple(t for t in self.topups if t.at > now)

    @property
    def version(self) -> str:
        """Changes whenever the balance is set or topped up: one runway alert episode each."""
        text = "|".join(f"{c.at.isoformat()}={c.amount}" for c in (self.stated, *self.topups))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Runway:
    """When the prepaid balance runs out, as of a moment."""

    as_of: datetime
    zone: str
    stated: Credit
    topped_up: Decimal
    spent: Decimal
    per_day: Decimal  # expected spend a day over the coming week
    empty_at: datetime | None  # None: not within a year (or nothing is being spent)
    earliest: datetime | None  # 80% range: at the high end of the forecast's spend
    latest: datetime | None  # at its low end; None: not within a year
    scheduled: tuple[Credit, ...] = ()
    unpriced_tokens: int = 0
    note: str = ""

    @property
    def left(self) -> Decimal:
        return self.stated.amount + self.topped_up - self.spent

    @property
    def days_left(self) -> Decimal | None:
        """Days from `as_of` until the balance is empty at the forecast pace (0 when used up)."""
        if self.empty_at is None:
            return None
        return Decimal(max(0.0, (self.empty_at - self.as_of).total_seconds())) / 86400

    @property
    def local_empty_day(self) -> date | None:
        return self.empty_at.astimezone(ZoneInfo(self.zone)).date() if self.empty_at else None


# ----------------------------------------------------------------------------- the balance


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), zone).astimezone(timezone.utc)


def prepaid_state(session: Session, settings: Settings) -> PrepaidState | None:
    """The file's and Slack's statements merged; None if no balance was ever stated."""
    zone = settings.zone
    stated: list[Credit] = []
    topups: list[Credit] = []
    if settings.prepaid is not None:
        stated.append(Credit(_midnight(settings.prepaid.since, zone), settings.prepaid.balance, FILE))
        topups.extend(Credit(_midnight(t.on, zone), t.amount, FILE) for t in settings.prepaid.topups)
    for entry in session.scalars(select(PrepaidEntry).order_by(PrepaidEntry.id)):
        credit = Credit(entry.effective_at, Decimal(entry.amount), entry.created_by)
        (stated if entry.kind == "set" else topups).append(credit)
    if not stated:
        return None
    last = max(stated, key=lambda c: c.at)  # ties: the later entry (Slack's come after the file's)
    later = sorted((t for t in topups if t.at >= last.at), key=lambda c: c.at)
    return PrepaidState(last, tuple(later))


def spent_since(session: Session, since: datetime) -> tuple[Decimal, int]:
    """Priced spend in every bucket that ends after `since`, and the tokens no price covers."""
    hour = since.replace(minute=0, second=0, microsecond=0)
    day = since.replace(hour=0, minute=0, second=0, microsecond=0)
    b = UsageBucket
    after = or_(and_(b.width == "1h", b.bucket_start >= hour), and_(b.width == "1d", b.bucket_start >= day))
    nanos, unpriced = session.execute(
        select(cast(func.sum(b.cost_nanos), BigInteger),
               cast(func.sum(func.coalesce(b.input_tokens, 0) + func.coalesce(b.output_tokens, 0))
                    .filter(b.cost_nanos.is_(None)), BigInteger))
        .where(after)
    ).one()
    return from_nanos(nanos), int(unpriced or 0)


def parse_credit_amount(text: str, *, allow_zero: bool) -> Decimal:
    """`500`, `$1,250.50`, `2k` → Decimal dollars; refuses negative, sub-cent and absurd amounts."""
    raw = text.strip().lstrip("$").replace(",", "").lower()
    multiplier = Decimal(1)
    if raw.endswith("k"):
        multiplier, raw = Decimal(1000), raw[:-1]
    try:
        amount = Decimal(raw) * multiplier
    except InvalidOperation:
        raise CreditError(f"the amount must be dollars like 500 or $1,250.50, not '{text[:30]}'") from None
    if not amount.is_finite():
        raise CreditError("the amount must be a number of dollars")
    if amount < 0:
        raise CreditError("a prepaid balance cannot be negative; spend is counted from the ledger, not entered")
    if amount == 0 and not allow_zero:
        raise CreditError("a top-up must be more than $0")
    if amount > MAX_PREPAID:
        raise CreditError(f"over ${MAX_PREPAID:,} is implausible for a prepaid balance; check the number")
    if amount != amount.quantize(Decimal("0.01")):
        raise CreditError("amounts are dollars and cents, like 500 or 1250.50")
    return amount.quantize(Decimal("0.01"))


def parse_credit(words: list[str]) -> tuple[str, Decimal | None]:
    """`credit` → ("show", None); `credit set 500` → ("set", 500); `credit add 200` → ("add", 200)."""
    if not words:
        return "show", None
    verb = words[0].lower()
    if verb not in ("set", "add"):
        raise CreditError(f"unknown credit action '{verb[:20]}'")
    if len(words) != 2:
        raise CreditError(f"give one amount: /budget credit {verb} 500")
    return verb, parse_credit_amount(words[1], allow_zero=verb == "set")


def record_credit(session: Session, settings: Settings, verb: str, amount: Decimal, *, user: str,
                  now: datetime | None = None) -> PrepaidEntry:
    """Store a balance (`set`, as of now) or a top-up (`add`); a top-up needs a balance first."""
    now = now or datetime.now(timezone.utc)
    if verb == "add" and prepaid_state(session, settings) is None:
        raise CreditError("there is no prepaid balance to top up yet; set one first",
                          "/budget credit set 500")
    entry = PrepaidEntry(kind="set" if verb == "set" else "topup", amount=amount, effective_at=now,
                         created_by=user[:64])
    session.add(entry)
    session.flush()
    return entry


# ----------------------------------------------------------------------------- the runway


def _segments(projection: Projection | None, now: datetime, zone: ZoneInfo) -> list[tuple[datetime, datetime, Decimal]]:
    """(start, end, expected spend) from now, a local day at a time, up to the horizon."""
    local_now = now.astimezone(zone)
    today = local_now.date()
    ahead = dict(projection.remaining) if projection is not None else {}
    month_end = (today.replace(day=1) + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    cycle: dict[int, Decimal] = {}
    past = sorted(((d, v) for d, v in (projection.daily.items() if projection else []) if d < today))
    for day, value in [*past, *((d, v) for d, v in sorted(ahead.items()) if d > today)]:
        cycle[day.weekday()] = value  # the latest figure of each weekday wins
    fallback = sum(cycle.values(), Decimal(0)) / len(cycle) if cycle else Decimal(0)
    segments = []
    for n in range(HORIZON_DAYS + 1):
        day = today + timedelta(days=n)
        start = now if n == 0 else _midnight(day, zone)
        end = _midnight(day + timedelta(days=1), zone)
        amount = ahead.get(day, Decimal(0)) if day <= month_end else cycle.get(day.weekday(), fallback)
        segments.append((start, end, max(amount, Decimal(0))))
    return segments


def _empty_at(left: Decimal, segments: list[tuple[datetime, datetime, Decimal]], scale: Decimal,
              scheduled: tuple[Credit, ...]) -> datetime | None:
    """When spend (each segment's × `scale`, evenly over it) has used `left` and the top-ups that
    land on the way; None if it lasts past the last segment."""
    pending = sorted(scheduled, key=lambda c: c.at)
    for start, end, amount in segments:
        while pending and pending[0].at <= start:
            left += pending.pop(0).amount
        if left <= 0:
            return start
        spend = amount * scale
        if spend >= left:
            return start + (end - start) * float(left / spend)
        left -= spend
    return None


def project_runway(state: PrepaidState, spent: Decimal, projection: Projection | None, *, now: datetime,
                   zone: ZoneInfo, unpriced_tokens: int = 0) -> Runway:
    """The runway of `state` after `spent`, at the pace `projection` (this month's total) expects."""
    topped_up = state.topped_up(now)
    scheduled = state.scheduled(now)
    left = state.stated.amount + topped_up - spent
    segments = _segments(projection, now, zone)
    week = [amount for _, _, amount in segments[1:8]]
    per_day = sum(week, Decimal(0)) / len(week)
    low = high = Decimal(1)
    if projection is not None:
        rest = projection.point - projection.month_to_date
        if rest > 0:
            low = max(Decimal(0), (projection.low - projection.month_to_date) / rest)
            high = (projection.high - projection.month_to_date) / rest
    if left <= 0:
        note = f"used up: {usd(-left)} more than the balance has been spent"
        return Runway(now, zone.key, state.stated, topped_up, spent, per_day, now, now, now, scheduled,
                      unpriced_tokens, note)
    point = _empty_at(left, segments, Decimal(1), scheduled)
    earliest = _empty_at(left, segments, high, scheduled)
    latest = _empty_at(left, segments, low, scheduled) if low > 0 else None
    if projection is None or not any(amount for _, _, amount in segments):
        note = "no spend recorded or forecast, so nothing draws the balance down"
    elif point is None:
        note = "lasts more than a year at the forecast pace"
    else:
        note = projection.note
    return Runway(now, zone.key, state.stated, topped_up, spent, per_day, point, earliest, latest, scheduled,
                  unpriced_tokens, note)


def _day(moment: datetime | None, zone: ZoneInfo) -> str:
    if moment is None:
        return "more than a year"
    local = moment.astimezone(zone)
    return f"{local:%a, %b} {local.day}"


def summary(runway: Runway) -> str:
    """One plain sentence: what is left of what, the pace, and the range (alerts and the terminal)."""
    zone = ZoneInfo(runway.zone)
    stated = runway.stated.at.astimezone(zone)
    topped = f" plus {usd(runway.topped_up)} topped up" if runway.topped_up else ""
    text = (f"{usd(runway.left)} left of {usd(runway.stated.amount)} stated on {stated:%b} {stated.day}"
            f"{topped}, {usd(runway.spent)} spent since; about {usd(runway.per_day)} a day ahead.")
    if runway.empty_at is not None and runway.left > 0:
        text += f" 80% range: {_day(runway.earliest, zone)} to {_day(runway.latest, zone)}."
    return text


def current_runway(context: Context, *, now: datetime | None = None) -> Runway | None:
    """The runway now, from the ledger and its month-end forecast; None if no balance is stated."""
    from jobs.forecast.month_end import forecast_month_end

    now = now or datetime.now(timezone.utc)
    with context.sessions() as session:
        state = prepaid_state(session, context.settings)
        if state is None:
            return None
        spent, unpriced = spent_since(session, state.stated.at)
        forecast = forecast_month_end(session, context.settings, context.catalog, now=now)
    return project_runway(state, spent, forecast.total if forecast else None, now=now, zone=context.settings.zone,
                          unpriced_tokens=unpriced)
