"""The App Home tab: budgets with progress and forecast, month-to-date per model, the batch
savings on offer. A pure function from an `Overview` to a `home` view within 100 blocks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from slack_sdk.models.blocks import Block, DividerBlock

from bot.views.blocks import MAX_VIEW_BLOCKS, context, escape, fields_section, header, line_sections, section, to_dicts
from bot.views.spend import (
    budget_line,
    by_urgency,
    how_to_get_usage_in,
    interval,
    model_line,
    rest_of_models,
    runway_line,
    saving_line,
    unpriced_note,
)
from jobs.digest.overview import Overview
from pricing.money import usd

BUDGET_BLOCKS = 20
MODEL_BLOCKS = 30
HOME_MODELS = 100  # listed one by one; the rest are summed on one line
HOME_SAVINGS = 10
NOTICE_BLOCKS = 5


def home_view(overview: Overview, notices: Sequence[str] = ()) -> dict[str, Any]:
    """The Home tab as `views.publish` takes it; `notices` (mrkdwn, for admins) come first."""
    return {"type": "home", "blocks": home_blocks(overview, notices)}


def notice_blocks(notices: Sequence[str]) -> list[Block]:
    """What an operator must fix, above everything else; at most 5 blocks however many there are."""
    if not notices:
        return []
    return [header("Needs an operator"),
            *line_sections([f"• {n}" for n in notices], max_blocks=NOTICE_BLOCKS - 2, more_label="more notices"),
            DividerBlock()]


def home_blocks(overview: Overview, notices: Sequence[str] = ()) -> list[dict[str, Any]]:
    o = overview
    month = f"{o.today:%B %Y}"
    blocks: list[Block] = [*notice_blocks(notices), header(f"LLM spend · {month}")]
    local = o.as_of.astimezone(o.zone_info)
    as_of = f"As of {local:%b} {local.day}, {local:%H:%M} ({escape(o.zone)}); rebuilt each time you open this tab."
    if o.empty:
        blocks.append(section("*No usage recorded yet.* Get usage in one of three ways:\n"
                              + how_to_get_usage_in(o.pull_cron)))
    else:
        total = o.total
        fields = [f"*So far*\n{usd(total.month_to_date)}",
                  f"*Forecast month-end*\n{usd(total.point)}\n80% interval {interval(total)}"]
        if o.total_saving is not None:
            fields.append(f"*Batch savings on offer*\n{usd(o.total_saving)}/month")
        blocks.append(fields_section(fields))
        notes = [as_of]
        if total.note:
            notes.append(f"Forecast: {escape(total.note)}.")
        if (note := unpriced_note(total, o.models)) is not None:
            notes.append(note)
        blocks.append(context(*notes))

    if o.runway is not None:
        blocks += [DividerBlock(), header("Prepaid balance"), section(runway_line(o.runway))]
        if o.runway.scheduled:
            blocks.append(context("Top-ups ahead: " + ", ".join(
                f"{usd(t.amount)} on {t.at.astimezone(o.zone_info):%b} {t.at.astimezone(o.zone_info).day}"
                for t in o.runway.scheduled[:10])))
        blocks.append(context("Set it with `/budget credit set AMOUNT`, record a top-up with "
                              "`/budget credit add AMOUNT` (admins), or `[prepaid]` in budget-guard.toml."))
    blocks += [DividerBlock(), header("Budgets")]
    if o.budgets:
        lines = [budget_line(b) for b in sorted(o.budgets, key=by_urgency)]
        blocks.extend(line_sections(lines, max_blocks=BUDGET_BLOCKS, more_label="more budgets"))
    else:
        blocks.append(section("No budgets yet. An admin can add one:\n"
                              "```/budget set llama-prod 5000 model=llama-3.3-70b project=search #alerts```"))

    if not o.empty:
        blocks += [DividerBlock(), header("Month to date by model")]
        lines = [model_line(m) for m in o.models[:HOME_MODELS]]
        if len(o.models) > HOME_MODELS:
            lines.append(rest_of_models(o.models[HOME_MODELS:]))
        blocks.extend(line_sections(lines or ["No spend this month yet."], max_blocks=MODEL_BLOCKS,
                                    more_label="more models"))

        blocks += [DividerBlock(), header("Batch savings on offer")]
        if o.total_saving is None:
            blocks.append(section("Batch advice is not available in this version."))
        elif not o.savings:
            blocks.append(section("Nothing looks like offline work on serverless right now."))
        else:
            lines = [saving_line(s) for s in o.savings[:HOME_SAVINGS]]
            if len(o.savings) > HOME_SAVINGS:
                lines.append(f"…and {len(o.savings) - HOME_SAVINGS} more; `budget-guard advise` lists them all.")
            blocks.extend(line_sections(lines, max_blocks=5))
            blocks.append(context(f"In all {usd(o.total_saving)}/month, at each model's batch rate."))
    else:
        blocks.append(context(as_of))
    # At most 75 blocks by construction (5 for notices, 20 for budgets, 30 for models, 5 for savings, 5 for
    # the prepaid balance); the cut is a backstop.
    return to_dicts(blocks[:MAX_VIEW_BLOCKS])


def home_error_view(notices: Sequence[str] = ()) -> dict[str, Any]:
    """What the tab shows when the overview could not be built (the error is logged)."""
    return {"type": "home", "blocks": to_dicts([
        *notice_blocks(notices),
        header("LLM spend"),
        section("Sorry, I could not load this month's spend just now; the error is logged. "
                "Open the tab again in a minute."),
    ])}
