"""The daily digest: pure functions from a `Digest` to its plain-text fallback, Block Kit and chart.

The render contract the scheduler and the CLI use is `digest_message(digest) -> (text, blocks,
png)`: `png` is the chart's bytes, or None when there is nothing to draw (an empty ledger).
Every list is cut to stay inside Slack's limits (50 blocks, 3,000 characters a section):
the largest first, then one "…and N more" line."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from slack_sdk.models.blocks import Block, DividerBlock

from bot.views.blocks import MAX_BLOCKS, context, escape, fields_section, header, line_sections, section, to_dicts
from bot.views.chart import chart_data, spend_chart
from bot.views.spend import (
    budget_line,
    by_urgency,
    change,
    how_to_get_usage_in,
    interval,
    model_line,
    rest_of_models,
    runway_line,
    saving_line,
    short_date,
    unpriced_note,
)
from jobs.digest.daily import ClusterRun, Digest, EndpointRun, Mover
from pricing.money import count, percent, usd

TOP_MODELS = 10
TOP_MOVERS = 5
TOP_SAVINGS = 3
TOP_ENDPOINTS = 10
TOP_CLUSTERS = 10
BUDGET_BLOCKS = 8  # sections for budgets; 50 budgets of two lines each fit in about four


def digest_message(digest: Digest) -> tuple[str, list[dict[str, Any]], bytes | None]:
    """The digest as posted: fallback text, blocks, and the chart PNG (None when empty)."""
    return digest_text(digest), digest_blocks(digest), spend_chart(digest)


def _title(digest: Digest) -> str:
    return f"Spend digest · {short_date(digest.day)}, {digest.day.year}" + (" (late)" if digest.late else "")


def digest_text(digest: Digest) -> str:
    """The plain-text fallback: notifications and screen readers read this."""
    o = digest.overview
    title = _title(digest)
    if o.empty:
        return (f"{title}: no usage recorded yet. Push it to /v1/usage, pull it from a configured source, "
                "or import a file with `budget-guard import`.")
    total = o.total
    text = (f"{title}: yesterday {usd(digest.yesterday_spend)} "
            f"({change(digest.yesterday_spend, digest.day_before_spend)} vs the day before); "
            f"{o.today:%B} to date {usd(total.month_to_date)}; forecast month-end {usd(total.point)} "
            f"(80% interval {interval(total)}).")
    over = [b for b in o.budgets if b.forecast is not None and b.forecast.point > b.amount]
    if over:
        text += (f" {len(over)} of {len(o.budgets)} budget{'' if len(o.budgets) == 1 else 's'} "
                 f"{'is' if len(over) == 1 else 'are'} forecast to go over.")
    if o.runway is not None and o.runway.left <= 0:
        text += " The prepaid balance is used up."
    elif o.runway is not None and o.runway.empty_at is not None:
        empty = o.runway.empty_at.astimezone(o.zone_info)
        text += f" The prepaid balance ({usd(o.runway.left)} left) runs out around {short_date(empty.date())}."
    return text[:3000]


def digest_blocks(digest: Digest) -> list[dict[str, Any]]:
    """The digest's Block Kit, within 50 blocks however many models, budgets and endpoints."""
    o = digest.overview
    blocks: list[Block] = [header(_title(digest))]
    if digest.late:
        due = digest.due_at.astimezone(o.zone_info)
        blocks.append(context(f":hourglass_flowing_sand: Late: this digest was due at {due:%H:%M} ({escape(o.zone)}) "
                              f"on {short_date(digest.day)}, when the bot was down or could not post; "
                              "it is posted now, once."))
    if o.empty:
        blocks.append(section("*No usage recorded yet*, so there is nothing to add up or forecast. "
                              "Get usage in one of three ways:\n" + how_to_get_usage_in(o.pull_cron)))
        if o.budgets:
            blocks.append(section(f"{len(o.budgets)} budget{'s are' if len(o.budgets) != 1 else ' is'} set and "
                                  "waiting for usage: " + ", ".join(f"*{escape(b.name)}* {usd(b.amount)}"
                                                                     for b in o.budgets[:20])
                                  + (f" …and {len(o.budgets) - 20} more" if len(o.budgets) > 20 else "")))
        blocks.append(context(f"Times in {escape(o.zone)}. The chart comes with the first day of usage."))
        return to_dicts(blocks)

    total = o.total
    yesterday = (f"*Yesterday* ({short_date(digest.yesterday)})\n*{usd(digest.yesterday_spend)}*\n"
                 f"{change(digest.yesterday_spend, digest.day_before_spend)} vs the day before · "
                 f"{change(digest.yesterday_spend, digest.week_before_spend)} vs last {digest.yesterday:%a}")
    fields = [
        yesterday,
        f"*{o.today:%B} to date*\n*{usd(total.month_to_date)}*\n{_days_so_far(o.today.day - 1)}",
        f"*Forecast month-end*\n*{usd(total.point)}*\n80% interval {interval(total)}",
    ]
    if o.total_saving is not None:
        suggestions = len(o.savings)
        fields.append(f"*Batch savings on offer*\n*{usd(o.total_saving)}*/month\n"
                      f"{suggestions} suggestion{'s' if suggestions != 1 else ''}")
    blocks.append(fields_section(fields))
    notes = []
    if o.today.day == 1 and digest.last_month_spend:
        notes.append(f":calendar: {o.today - timedelta(days=1):%B} closed at {usd(digest.last_month_spend)}.")
    if total.note:
        notes.append(f":crystal_ball: Forecast: {escape(total.note)}.")
    if o.stale and o.last_usage_at is not None:
        newest = o.last_usage_at.astimezone(o.zone_info)
        notes.append(f":satellite_antenna: The newest usage is from {newest:%b} {newest.day}, {newest:%H:%M}; "
                     "if a source stopped, these numbers are low.")
    if (note := unpriced_note(total, o.models)) is not None:
        notes.append(note)
    if notes:
        blocks.append(context(*notes))

    blocks.append(DividerBlock())
    if o.runway is not None:
        blocks.append(section(runway_line(o.runway)))
    if o.budgets:
        lines = [budget_line(b) for b in sorted(o.budgets, key=by_urgency)]
        blocks.extend(line_sections(["*Budgets*", *lines], max_blocks=BUDGET_BLOCKS, more_label="more budgets"))

    model_lines = [model_line(m) for m in o.models[:TOP_MODELS]]
    if len(o.models) > TOP_MODELS:
        model_lines.append(rest_of_models(o.models[TOP_MODELS:]))
    blocks.extend(line_sections(["*Forecast by model* (so far → month-end, 80% interval)", *model_lines],
                                max_blocks=2, more_label="more models"))

    if digest.movers:
        blocks.extend(line_sections(["*Top movers* (last 7 days against the 7 before)",
                                     *(_mover_line(m) for m in digest.movers[:TOP_MOVERS])], max_blocks=1))

    if o.savings:
        lines = [saving_line(s) for s in o.savings[:TOP_SAVINGS]]
        if len(o.savings) > TOP_SAVINGS:
            lines.append(f"…and {len(o.savings) - TOP_SAVINGS} more; `budget-guard advise` lists them all.")
        blocks.extend(line_sections(["*Move to batch*", *lines], max_blocks=1))

    if digest.endpoints:
        month = "this month" if digest.yesterday.month == o.today.month else f"in {digest.yesterday:%B}"
        lines = [_endpoint_line(e, month) for e in digest.endpoints[:TOP_ENDPOINTS]]
        if len(digest.endpoints) > TOP_ENDPOINTS:
            rest = digest.endpoints[TOP_ENDPOINTS:]
            lines.append(f"…and {len(rest)} more endpoints: {usd(sum((e.cost for e in rest), Decimal(0)))}")
        blocks.extend(line_sections([f"*Dedicated endpoints* ({short_date(digest.yesterday)})", *lines],
                                    max_blocks=1, more_label="more endpoints"))

    if digest.clusters:
        month = "this month" if digest.yesterday.month == o.today.month else f"in {digest.yesterday:%B}"
        lines = [_cluster_line(c, month) for c in digest.clusters[:TOP_CLUSTERS]]
        if len(digest.clusters) > TOP_CLUSTERS:
            rest = digest.clusters[TOP_CLUSTERS:]
            lines.append(f"…and {len(rest)} more clusters: {usd(sum((c.cost for c in rest), Decimal(0)))}")
        blocks.extend(line_sections([f"*GPU clusters* ({short_date(digest.yesterday)})", *lines],
                                    max_blocks=1, more_label="more clusters"))

    chart = "The chart shows daily spend per model this month and the forecast to month-end. " \
        if chart_data(digest) is not None else ""
    blocks.append(context(f"{chart}Times in {escape(o.zone)}; `budget-guard digest --dry-run` shows this any time."))
    # At most 21 blocks by construction (8 for budgets, 2 for models, 1 per other list and the prepaid
    # balance); the cut is a backstop.
    return to_dicts(blocks[:MAX_BLOCKS])


def _days_so_far(full_days: int) -> str:
    if full_days == 0:
        return "today so far"
    return f"{full_days} full day{'s' if full_days != 1 else ''} and today so far"


def _mover_line(mover: Mover) -> str:
    arrow = "▲" if mover.change > 0 else "▼"
    sign = "+" if mover.change > 0 else "-"
    relative = f", {sign}{percent(abs(mover.change) / mover.last_week)}" if mover.last_week else ", new"
    driver = f" · mostly {escape(mover.driver)}" if mover.driver else ""
    return (f"{arrow} *{escape(mover.model)}* {usd(mover.this_week)} ({sign}{usd(abs(mover.change))}{relative})"
            f"{driver}")


def _endpoint_line(endpoint: EndpointRun, month: str) -> str:
    """`• *name* (model): up 24.0 h, $95.76, … · $1,234.56 this month` (or `in November` on the 1st)."""
    hours = endpoint.uptime_minutes / 60
    served = f", {count(endpoint.tokens)} tokens" if endpoint.tokens else ", no tokens recorded"
    effective = ""
    if endpoint.tokens:
        effective = f" ({usd(endpoint.cost / endpoint.tokens * 1_000_000)}/1M effective)"
    name = escape(endpoint.name)
    model = f" ({escape(endpoint.model)})" if endpoint.model != endpoint.name else ""
    return (f"• *{name}*{model}: up {hours:.1f} h, {usd(endpoint.cost)}{served}{effective} · "
            f"{usd(endpoint.month_cost)} {month}")


def _cluster_line(cluster: ClusterRun, month: str) -> str:
    """`• *name* (H100_SXM): 192.0 GPU-hours, $766.08 · $1,532.16 this month` (unpriced: said so)."""
    hours = cluster.gpu_minutes / 60
    cost = "no rate for this GPU (set [[cluster_rates]])" if cluster.unpriced else usd(cluster.cost)
    return (f"• *{escape(cluster.name)}* ({escape(cluster.gpu_type)}): {hours:.1f} GPU-hours, {cost} · "
            f"{usd(cluster.month_cost)} {month}")


def terminal_text(text: str, blocks: list[dict[str, Any]]) -> str:
    """The digest as the terminal shows it (`budget-guard digest --dry-run`)."""
    out: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            title = block["text"]["text"]
            out += [title, "=" * len(title)]
        elif kind == "section":
            if block.get("text"):
                out.append(_unescape(block["text"]["text"]))
            for item in block.get("fields") or []:
                out.append(_unescape(item["text"]).replace("\n", " · ", 1).replace("\n", " · "))
        elif kind == "context":
            out += [_unescape(e.get("text", "")) for e in block.get("elements", [])]
        elif kind == "divider":
            out.append("-" * 60)
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")

