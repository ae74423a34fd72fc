"""`budget-guard quote "<text>"`: the same grammar and answer as /costquote, for scripts."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from bot.commands.startup import StartupError, fail, settings_from_args
from pricing.money import count, per_million, percent, unit_usd, usd

if TYPE_CHECKING:
    from pricing.quote import ModelQuote, QuoteResult


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("quote", help="what a workload costs per request and per month")
    parser.add_argument("text", nargs="+", help='e.g. "maestro 3k/1k x 2M/mo"')
    parser.add_argument("--json", action="store_true", help="exact amounts as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from jobs.config.catalog import build_catalog
    from jobs.config.settings import ConfigError
    from pricing.grammar import parse
    from pricing.lexicon import QuoteSyntaxError
    from pricing.quote import build_quote, quote_json

    try:
        settings = settings_from_args(args)
        catalog = build_catalog(settings)
    except StartupError as exc:
        return fail(exc)
    except ConfigError as exc:
        return fail(StartupError(f"configuration: {exc}"))
    text = " ".join(args.text)
    try:
        request = parse(text)
        if request.kind == "help":
            from bot.views.quote import help_text

            print(help_text())
            return 0
        result = build_quote(request, catalog, default_gpu=settings.default_gpu)
    except QuoteSyntaxError as exc:
        from bot.views.quote import error_text

        print(error_text(exc.message, exc.example), file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(quote_json(result), indent=2))
    else:
        print(render_table(result))
    return 0


def render_table(result: QuoteResult) -> str:
    """A readable terminal table of the quote."""
    if result.cluster is not None:
        c = result.cluster
        lines = [f"GPU cluster: {c.gpus} GPUs x {count(c.hours)} h at {usd(c.per_gpu_hour)}/GPU-hour = {usd(c.cost)}"]
        if c.effective_per_million is not None:
            lines.append(f"effective {per_million(c.effective_per_million)} at the stated throughput")
        return "\n".join(lines)
    first = result.quotes[0]
    shape = f"{count(first.input_tokens)} in + {count(first.output_tokens)} out tokens"
    if first.requests_per_month is not None:
        shape += f" x {count(first.requests_per_month)} requests/month"
    rows = [("model", "rates in/out per 1M", "serverless/req", "batch/req", "serverless/mo", "batch/mo", "dedicated/mo")]
    for q in result.quotes:
        rows.append((
            q.label,
            f"{unit_usd(q.price.input)} / {unit_usd(q.price.output)}",
            unit_usd(q.serverless.per_request),
            unit_usd(q.batch.per_request) if q.batch else "n/a",
            usd(q.serverless.monthly) if q.serverless.monthly is not None else "-",
            usd(q.batch.monthly) if q.batch and q.batch.monthly is not None else ("-" if q.batch else "n/a"),
            f"{usd(q.dedicated.monthly_cost)} ({q.dedicated.gpus} GPU{'s' if q.dedicated.gpus != 1 else ''})"
            if q.dedicated else "-",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    table = [shape, ""]
    for n, row in enumerate(rows):
        table.append("  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)))
        if n == 0:
            table.append("  ".join("-" * w for w in widths))
    compare = result.request.kind == "compare"
    for q in result.quotes:
        lines = summary_lines(q)
        if compare and lines:
            table.append(f"\n{q.label}:")
            table.extend("  " + line for line in lines)
        elif lines:
            table.append("")
            table.extend(lines)
    if result.notes:
        table.append("")
        table.extend(result.notes)
    return "\n".join(table)


def summary_lines(q: ModelQuote) -> list[str]:
    """What one model's quote adds below the table: its batch saving, dedicated line, matches."""
    from bot.views.dedicated import dedicated_lines

    lines = []
    if q.batch is not None and q.batch_saving is not None and q.serverless.monthly is not None:
        lines.append(f"batch saves {usd(q.batch_saving)}/month ({percent(q.batch_saving_fraction or 0)})")
    dedicated = dedicated_lines(q)
    lines.extend(dedicated[:1] + ["  " + line for line in dedicated[1:]])
    if q.runners_up:
        lines.append("also matched: " + ", ".join(q.runners_up))
    if q.serverless.monthly is not None:
        lines.append(f"cheapest: {q.cheapest}")
    return lines
