"""`budget-guard usage`: recorded usage and cost per model, project, feature or mode."""

from __future__ import annotations

import argparse
import json
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from bot.commands.startup import StartupError, add_database_option, add_now_option, fail, open_context
from pricing.money import usd

if TYPE_CHECKING:
    from db.totals import GroupTotal

GROUP_CHOICES = ("model", "project", "feature", "mode", "api_key", "environment", "source")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("usage", help="recorded tokens, requests and cost per group")
    parser.add_argument("--since", help="first day (YYYY-MM-DD in TZ, or an ISO time); default: this month's start")
    parser.add_argument("--until", help="last day, included (YYYY-MM-DD), or an ISO time (excluded); default: now")
    parser.add_argument("--by", choices=GROUP_CHOICES, default="model", help="group by (default: model)")
    parser.add_argument("--json", action="store_true", help="a JSON list with exact amounts as decimal strings")
    add_now_option(parser)
    add_database_option(parser)
    parser.set_defaults(func=run)


def parse_moment(text: str, zone: ZoneInfo, *, end: bool = False) -> datetime:
    """A UTC time from `YYYY-MM-DD` (midnight in `zone`; with `end`, the next midnight) or ISO 8601."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        pass
    else:
        if end:
            day += timedelta(days=1)
        return datetime.combine(day, time(0), zone).astimezone(timezone.utc)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise StartupError(f"{text!r} is not a date: use YYYY-MM-DD, e.g. 2026-11-01") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=zone)).astimezone(timezone.utc)


def month_start(zone: ZoneInfo, now: datetime | None = None) -> datetime:
    local = (now or datetime.now(timezone.utc)).astimezone(zone)
    return datetime.combine(local.date().replace(day=1), time(0), zone).astimezone(timezone.utc)


def run(args: argparse.Namespace) -> int:
    from db.totals import totals

    try:
        context = open_context(args)
    except StartupError as exc:
        return fail(exc)
    try:
        zone = context.settings.zone
        since = parse_moment(args.since, zone) if args.since else month_start(zone, args.now)
        until = parse_moment(args.until, zone, end=True) if args.until else args.now
        if until is not None and until <= since:
            raise StartupError("--until is before --since")
        with context.sessions() as session:
            groups = totals(session, since, until, args.by)
    except StartupError as exc:
        return fail(exc)
    finally:
        context.close()
    if args.json:
        print(json.dumps([group_json(args.by, g) for g in groups], indent=2))
    else:
        print(render(args.by, groups, since, until, zone))
    return 0


def group_json(by: str, group: GroupTotal) -> dict[str, object]:
    """One group as JSON: counts as integers, cost as an exact decimal string (null: unpriced)."""
    return {
        "by": by,
        "key": group.key,
        "input_tokens": group.input_tokens,
        "cached_input_tokens": group.cached_input_tokens,
        "output_tokens": group.output_tokens,
        "requests": group.requests,
        "uptime_minutes": group.uptime_minutes,
        "cost": f"{group.cost:f}" if group.cost is not None else None,
        "unpriced_tokens": group.unpriced_tokens,
        "unpriced_minutes": group.unpriced_minutes,
    }


def render(by: str, groups: list[GroupTotal], since: datetime, until: datetime | None, zone: ZoneInfo) -> str:
    """A terminal table; unpriced usage says so rather than showing $0."""
    end = f"{until.astimezone(zone):%Y-%m-%d %H:%M}" if until else "now"
    title = f"usage by {by}, {since.astimezone(zone):%Y-%m-%d %H:%M} to {end} ({zone.key})"
    if not groups:
        return f"{title}\nno usage recorded in this period"
    header = (by, "input", "cached", "output", "requests", "cost", "unpriced tokens")
    rows = [header]
    for g in groups:
        cost = usd(g.cost) if g.cost is not None else "unpriced"
        if g.uptime_minutes:
            cost += f" ({g.uptime_minutes:,} min" + (f", {g.unpriced_minutes:,} unpriced)" if g.unpriced_minutes else ")")
        rows.append((g.key or "(none)", f"{g.input_tokens:,}", f"{g.cached_input_tokens:,}", f"{g.output_tokens:,}",
                     f"{g.requests:,}", cost, f"{g.unpriced_tokens:,}" if g.unpriced_tokens else "-"))
    total_cost = sum((g.cost for g in groups if g.cost is not None), start=Decimal(0))
    unpriced = sum(g.unpriced_tokens for g in groups)
    rows.append(("total", f"{sum(g.input_tokens for g in groups):,}", f"{sum(g.cached_input_tokens for g in groups):,}",
                 f"{sum(g.output_tokens for g in groups):,}", f"{sum(g.requests for g in groups):,}",
                 usd(total_cost), f"{unpriced:,}" if unpriced else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [title]
    for n, row in enumerate(rows):
        if n == len(rows) - 1:
            lines.append("  ".join("-" * w for w in widths))
        lines.append("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
    if unpriced:
        lines.append(f"{unpriced:,} tokens have no known price and are not in the cost: for another name of a known "
                     "model add an [[aliases]] entry, else a [[prices]] entry; then `budget-guard reprice --since DATE`")
    return "\n".join(lines)
