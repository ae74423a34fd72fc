"""The prepaid runway as `/budget credit` answers it and as `budget-guard runway` prints it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from slack_sdk.models.blocks import Block

from bot.views.blocks import context, escape, header, section, to_dicts
from bot.views.spend import runway_line
from jobs.forecast.runway import FILE, Runway, summary
from pricing.money import count, usd

NO_BALANCE = ("No prepaid balance is recorded. An admin can state it with `/budget credit set 500`, "
              "or set `[prepaid]` in budget-guard.toml (`balance = 500`, `since = 2026-11-01`).")


def _who(by: str) -> str:
    return FILE if by == FILE else f"<@{escape(by)}>"


def credit_blocks(runway: Runway | None, changed: str | None = None) -> list[dict[str, Any]]:
    """The ephemeral answer to `/budget credit`: what changed, then the runway."""
    blocks: list[Block] = [header("Prepaid balance")]
    if changed:
        blocks.append(section(f":white_check_mark: {escape(changed)}"))
    if runway is None:
        blocks.append(section(NO_BALANCE))
        return to_dicts(blocks)
    blocks.append(section(runway_line(runway)))
    zone = ZoneInfo(runway.zone)
    stated = runway.stated.at.astimezone(zone)
    notes = [f"Stated by {_who(runway.stated.by)} as of {stated:%Y-%m-%d %H:%M} ({escape(runway.zone)})."]
    if runway.scheduled:
        notes.append("Top-ups ahead: " + ", ".join(f"{usd(t.amount)} on {t.at.astimezone(zone):%b %d}"
                                                   for t in runway.scheduled[:10]) + ".")
    if runway.note:
        notes.append(f"Forecast: {escape(runway.note)}.")
    if runway.unpriced_tokens:
        notes.append(f"{count(runway.unpriced_tokens)} tokens of models with no known price are not counted.")
    blocks.append(context(*notes))
    return to_dicts(blocks)


def credit_text(runway: Runway | None, changed: str | None = None) -> str:
    """The plain-text fallback of `credit_blocks`."""
    head = f"{changed} " if changed else ""
    return escape(head + (summary(runway) if runway is not None else NO_BALANCE))


def runway_terminal(runway: Runway) -> str:
    """`budget-guard runway` without --json."""
    zone = ZoneInfo(runway.zone)
    lines = [f"Prepaid runway as of {runway.as_of.astimezone(zone):%Y-%m-%d %H:%M} ({runway.zone})", ""]

    def row(label: str, value: str) -> None:
        lines.append(f"{label:<22}{value}")

    stated = runway.stated.at.astimezone(zone)
    row("balance stated", f"{usd(runway.stated.amount)} as of {stated:%Y-%m-%d %H:%M} by {runway.stated.by}")
    row("topped up since", usd(runway.topped_up))
    row("spent since", usd(runway.spent))
    row("left", usd(runway.left))
    row("expected spend a day", usd(runway.per_day))

    def when(moment: Any) -> str:
        return moment.astimezone(zone).strftime("%a %Y-%m-%d %H:%M") if moment is not None else "more than a year"

    if runway.left <= 0:
        row("runs out", "used up")
    else:
        days = runway.days_left
        row("runs out", when(runway.empty_at) + (f" (in {days:.1f} days)" if days is not None else ""))
        row("80% range", f"{when(runway.earliest)} to {when(runway.latest)}")
    for topup in runway.scheduled:
        row("top-up ahead", f"{usd(topup.amount)} on {topup.at.astimezone(zone):%Y-%m-%d}")
    if runway.unpriced_tokens:
        lines.append(f"\n{runway.unpriced_tokens:,} tokens of models with no known price are not counted.")
    if runway.note:
        lines.append(f"\nForecast: {runway.note}.")
    return "\n".join(lines)


def runway_json(runway: Runway) -> dict[str, Any]:
    """Exact amounts as decimal strings, times in ISO 8601 (UTC)."""

    def iso(moment: Any) -> str | None:
        return moment.isoformat() if moment is not None else None

    days = runway.days_left
    return {
        "as_of": iso(runway.as_of),
        "zone": runway.zone,
        "stated": {"amount": str(runway.stated.amount), "at": iso(runway.stated.at), "by": runway.stated.by},
        "topped_up": str(runway.topped_up),
        "spent": str(runway.spent),
        "left": str(runway.left),
        "per_day": str(runway.per_day),
        "empty_at": iso(runway.empty_at),
        "empty_on": runway.local_empty_day.isoformat() if runway.local_empty_day else None,
        "days_left": str(days.quantize(Decimal("0.01"))) if days is not None else None,
        "interval": 0.8,
        "earliest": iso(runway.earliest),
        "latest": iso(runway.latest),
        "scheduled_topups": [{"amount": str(t.amount), "at": iso(t.at)} for t in runway.scheduled],
        "unpriced_tokens": runway.unpriced_tokens,
        "note": runway.note,
    }
