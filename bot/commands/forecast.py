"""`budget-guard forecast [--by model|project|feature] [--json]`: where this month will land.

Month-to-date spend, the month-end forecast and its 80% interval per group, from the ledger,
as the digest and the budget check compute them (`jobs.forecast.projection`): tokens are forecast
and priced per remaining day, so a start-dated price change moves the forecast. The total is
the sum of the groups' forecasts; its interval comes from the summed series."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from bot.commands.startup import StartupError, add_database_option, add_now_option, fail, open_context, utc_now
from pricing.money import count, usd

if TYPE_CHECKING:
    from jobs.forecast.month_end import LedgerForecast
    from jobs.forecast.projection import Projection

GROUPS = ("model", "project", "feature")  # jobs.forecast.month_end.GROUPS, without importing it to build the parser


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("forecast", help="month-to-date spend and the month-end forecast per group")
    parser.add_argument("--by", choices=GROUPS, default="model", help="group by (default: model)")
    parser.add_argument("--json", action="store_true", help="JSON with exact amounts as decimal strings")
    add_now_option(parser)
    add_database_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from jobs.forecast.month_end import forecast_month_end
    from jobs.forecast.projection import HISTORY_DAYS

    try:
        context = open_context(args)
    except StartupError as exc:
        return fail(exc)
    try:
        with context.sessions() as session:
            result = forecast_month_end(session, context.settings, context.catalog, by=args.by,
                                        now=args.now or utc_now())
    finally:
        context.close()
    if result is None:
        return fail(StartupError(
            f"no usage recorded this month or in the {HISTORY_DAYS} days before it: nothing to forecast. Record "
            "usage first (`budget-guard import FILE`, `budget-guard pull`, or POST /v1/usage)."), code=1)
    print(json.dumps(forecast_json(result), indent=2) if args.json else render(result))
    return 0


def projection_json(p: Projection) -> dict[str, object]:
    """One group with exact amounts as decimal strings."""
    return {
        "key": p.key,
        "month_to_date": str(p.month_to_date),
        "forecast": str(p.point),
        "low": str(p.low),
        "high": str(p.high),
        "unpriced_tokens": p.unpriced_tokens,
        "note": p.note,
    }


def forecast_json(result: LedgerForecast) -> dict[str, object]:
    return {
        "month": f"{result.today:%Y-%m}",
        "as_of": result.as_of.isoformat(),
        "zone": result.zone,
        "by": result.by,
        "interval": 0.8,
        "total": projection_json(result.total),
        "groups": [projection_json(p) for p in result.groups],
    }


def render(result: LedgerForecast) -> str:
    """A table: one line per group, then the total; unpriced tokens are shown, never as $0."""
    header = (result.by, "month-to-date", "forecast", "low (80%)", "high (80%)", "unpriced tokens", "note")
    lines = [header]
    for p in [*result.groups, result.total]:
        lines.append((p.key, usd(p.month_to_date), usd(p.point), usd(p.low), usd(p.high),
                      count(p.unpriced_tokens) if p.unpriced_tokens else "", p.note))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]

    def fmt(line: tuple[str, ...]) -> str:
        cells = [line[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(line[1:-1], widths[1:])]
        return "  ".join(cells + [line[-1]]).rstrip()

    local = result.as_of.astimezone(ZoneInfo(result.zone))
    title = f"Forecast for {result.today:%B %Y} ({result.zone}), as of {local:%Y-%m-%d %H:%M}"
    out = [title, "", fmt(lines[0])]
    out.extend(fmt(line) for line in lines[1:-1])
    out.append(fmt(tuple("-" * w for w in widths) + ("",)))
    out.append(fmt(lines[-1]))
    if result.total.unpriced_tokens:
        out.append("")
        out.append(f"{count(result.total.unpriced_tokens)} tokens this month are of models with no known price; "
                   "they are not in the amounts above (add an [[aliases]] or [[prices]] entry, then `budget-guard reprice`).")
    return "\n".join(out)
