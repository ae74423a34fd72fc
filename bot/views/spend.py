"""Lines about this month's spend, shared by the daily digest and the App Home: budgets with
their bars and forecasts, models with their outlook, batch suggestions, and how to get usage in."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from bot.views.alerts import progress_bar
from bot.views.blocks import escape
from jobs.digest.overview import BatchSaving, BudgetStatus, Outlook
from jobs.forecast.runway import Runway
from pricing.money import count, percent, usd

UNPRICED_NAMED = 5  # unpriced models named in the note; the rest are counted


def how_to_get_usage_in(pull_cron: str) -> str:
    """The three ways in, with the configured pull schedule (`PULL_CRON`)."""
    return (
        "• *Push*: have your services `POST` each response's `usage` object to this bot's `/v1/usage` "
        "with a bearer token from `INGEST_TOKENS` (one record or NDJSON).\n"
        "• *Pull*: add a `[[sources]]` entry to `budget-guard.toml` (an OpenAI-style usage API, a JSON endpoint "
        f"with a field mapping, or together.ai dedicated endpoints); it is pulled {pull_schedule(pull_cron)}.\n"
        "• *Import*: `budget-guard import usage.csv` (CSV or JSONL) from a billing export or your own logs."
    )


def pull_schedule(cron: str) -> str:
    """A cron expression in words where it is a common one (`every 15 minutes`, `hourly at :05`,
    `daily at 03:00`), else the expression itself."""
    fields = cron.split()
    if len(fields) == 5 and fields[2:] == ["*", "*", "*"]:
        minute, hour = fields[:2]
        if hour == "*" and (minute == "*" or minute == "*/1"):
            return "every minute"
        if hour == "*" and minute.startswith("*/") and minute[2:].isdecimal():
            return f"every {int(minute[2:])} minutes"
        if minute.isdecimal() and int(minute) < 60:
            if hour == "*":
                return f"hourly at :{int(minute):02d}"
            if hour.isdecimal() and int(hour) < 24:
                return f"daily at {int(hour):02d}:{int(minute):02d}"
    return f"on the schedule `{escape(cron)}` (`PULL_CRON`)"


def short_date(day: date) -> str:
    """`Tue, Nov 24`."""
    return f"{day:%a, %b} {day.day}"


def interval(outlook: Outlook) -> str:
    return f"{usd(outlook.low)}–{usd(outlook.high)}"


def change(now: Decimal, before: Decimal) -> str:
    """`▲ 12.3%`, `▼ 4%`, `unchanged`, or `new` when there was nothing before."""
    if before == 0:
        return "unchanged" if now == 0 else "new"
    fraction = (now - before) / before
    if fraction.quantize(Decimal("0.001")) == 0:
        return "unchanged"
    return f"{'▲' if fraction > 0 else '▼'} {percent(abs(fraction))}"


def _budget_icon(budget: BudgetStatus) -> str:
    if budget.spent >= budget.amount:
        return ":rotating_light:"
    if budget.forecast is not None and budget.forecast.point > budget.amount:
        return ":warning:"
    return ":white_check_mark:"


def by_urgency(budget: BudgetStatus) -> tuple:  # type: ignore[type-arg]
    """Sort key: over first, then forecast to go over, then by how much of the budget is used."""
    spent_share = budget.spent / budget.amount
    forecast_share = budget.forecast.point / budget.amount if budget.forecast is not None else Decimal(0)
    return (spent_share < 1, forecast_share <= 1, -forecast_share, -spent_share, budget.name)


def budget_line(budget: BudgetStatus) -> str:
    """`:warning: *name* $620.00 of $1,000.00 · scope` then the bar and where the forecast lands."""
    head = (f"{_budget_icon(budget)} *{escape(budget.name)}* {usd(budget.spent)} of {usd(budget.amount)}"
            f" · {escape(budget.scope)}")
    bar = f"`{progress_bar(budget.spent / budget.amount)}`"
    outlook = budget.forecast
    if outlook is None:
        return f"{head}\n{bar} no usage in this scope yet"
    text = (f"{head}\n{bar} forecast {usd(outlook.point)} ({percent(outlook.point / budget.amount)}), "
            f"80%: {interval(outlook)}")
    if budget.spent > budget.amount:
        text += f" · over by {usd(budget.spent - budget.amount)}"
    elif budget.crossing is not None:
        text += f" · reaches the budget around {budget.crossing:%b} {budget.crossing.day}"
    return text


def model_line(outlook: Outlook) -> str:
    """`• *model* $1,234.56 so far → $2,345.67 (80%: $2,100.00–$2,600.00)`; unpriced usage is said so."""
    name = f"• *{escape(outlook.key)}*"
    if outlook.month_to_date == 0 and outlook.point == 0 and outlook.unpriced_tokens:
        return f"{name} unpriced: {count(outlook.unpriced_tokens)} tokens this month, no known price"
    line = f"{name} {usd(outlook.month_to_date)} so far → {usd(outlook.point)} (80%: {interval(outlook)})"
    if outlook.unpriced_tokens:
        line += f" + {count(outlook.unpriced_tokens)} unpriced tokens"
    return line


def saving_line(saving: BatchSaving) -> str:
    """`• *model* · project=x: save $1,234.56/month on batch (why)`."""
    who = f" · {escape(saving.who)}" if saving.who else ""
    why = f" — {escape(saving.reason)}" if saving.reason else ""
    return f"• *{escape(saving.model)}*{who}: save *{usd(saving.monthly_saving)}*/month on batch{why}"


def rest_of_models(models: list[Outlook]) -> str:
    """The line that stands for models not listed: how many, and their sums."""
    so_far = sum((m.month_to_date for m in models), Decimal(0))
    point = sum((m.point for m in models), Decimal(0))
    return f"…and {len(models)} more models: {usd(so_far)} so far → {usd(point)}"


def unpriced_note(outlook: Outlook, models: Sequence[Outlook] = ()) -> str | None:
    """Unpriced tokens this month, naming the models they are of (the largest five)."""
    if not outlook.unpriced_tokens:
        return None
    named = sorted((m for m in models if m.unpriced_tokens), key=lambda m: (-m.unpriced_tokens, m.key))
    which = ", ".join(f"`{escape(m.key)}` ({count(m.unpriced_tokens)})" for m in named[:UNPRICED_NAMED])
    if len(named) > UNPRICED_NAMED:
        which += f" and {len(named) - UNPRICED_NAMED} more"
    return (f":grey_question: {count(outlook.unpriced_tokens)} tokens this month are of models with no known price"
            + (f": {which}" if which else "") + "; they are not in these dollars. If a name is another name for a "
            "known model, add it under `[[aliases]]` in `budget-guard.toml`, else its rates under `[[prices]]`; "
            "then `budget-guard reprice --since` the month's first day.")


def _local_day(moment: datetime | None, zone: str, *, weekday: bool = True) -> str:
    if moment is None:
        return "more than a year"
    local = moment.astimezone(ZoneInfo(zone))
    return f"{local:%a, %b} {local.day}" if weekday else f"{local:%b} {local.day}"


def runway_line(runway: Runway) -> str:
    """`:fuelpump: *Prepaid balance* $608.00 left … runs out around *Sat, Nov 21* (80%: Nov 20–Nov 23)`."""
    stated = runway.stated.at.astimezone(ZoneInfo(runway.zone))
    topped = f" + {usd(runway.topped_up)} topped up" if runway.topped_up else ""
    basis = f"of {usd(runway.stated.amount)} on {stated:%b} {stated.day}{topped}, {usd(runway.spent)} spent since"
    if runway.left <= 0:
        return f":rotating_light: *Prepaid balance used up*: {usd(-runway.left)} more spent than it held ({basis})"
    head = f":fuelpump: *Prepaid balance* {usd(runway.left)} left ({basis})"
    if runway.empty_at is None:
        pace = f"about {usd(runway.per_day)}/day" if runway.per_day else "nothing is drawing it down"
        return f"{head}\n{pace}: lasts more than a year at this pace"
    earliest = _local_day(runway.earliest, runway.zone, weekday=False)
    latest = _local_day(runway.latest, runway.zone, weekday=False)
    return (f"{head}\nabout {usd(runway.per_day)}/day: runs out around *{_local_day(runway.empty_at, runway.zone)}* "
            f"(80%: {earliest}–{latest})")
