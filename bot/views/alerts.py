"""Views for budget alerts and `/budget`: pure functions from data to Block Kit."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field
from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement, ConfirmObject, PlainTextObject

from bot.views.actions import ACKNOWLEDGE, ALERT_ACTIONS_BLOCK, BREAKDOWN, SNOOZE, STOP_ENDPOINT
from bot.views.blocks import clip, context, escape, header, line_sections, section, to_dicts
from jobs.budgets.rules import AlertDraft
from jobs.budgets.specs import BudgetSpec
from pricing.money import percent, usd

ICONS = {"threshold": ":rotating_light:", "forecast": ":crystal_ball:", "spike": ":chart_with_upwards_trend:",
         "source": ":satellite_antenna:", "price": ":label:", "runway": ":fuelpump:", "idle": ":zzz:",
         "stop": ":octagonal_sign:", "drift": ":scales:"}


class AlertAction(BaseModel):
    """What a button carries: the alert it acts on (checked against the database on click)."""

    alert_id: int = Field(gt=0, lt=2**31)  # the alerts.id column: a larger id is no alert of ours
    budget: str = Field(max_length=200)


class StopAction(BaseModel):
    """What the Stop endpoint button carries: its idle alert and the endpoint (both checked on click)."""

    alert_id: int = Field(gt=0, le=2**31 - 1)
    endpoint: str = Field(min_length=1, max_length=128)


def progress_bar(fraction: Decimal, width: int = 20) -> str:
    """A text bar like `▓▓▓▓▓▓░░░░ 62%`; over 100% fills and says so."""
    filled = min(width, max(0, int(fraction * width)))
    return "▓" * filled + "░" * (width - filled) + f" {percent(fraction)}"


def alert_message(draft: AlertDraft, alert_id: int) -> tuple[str, list[dict[str, Any]]]:
    """The alert as posted: headline, details, drivers, advice and the three buttons."""
    icon = ICONS.get(draft.kind, ":warning:")
    blocks: list[Block] = [header(f"{draft.headline}")]
    lines = [escape(d) for d in draft.details]
    if draft.amount and draft.spend is not None:
        lines.append(f"`{progress_bar(draft.spend / draft.amount)}`")
    blocks.append(section(f"{icon} " + "\n".join(lines)))
    if draft.drivers:
        blocks.append(section("*What drove it*\n" + "\n".join(f"• {escape(d.label)}: {usd(d.amount)}" for d in draft.drivers)))
    blocks.append(section(f"*What to do*\n{escape(draft.advice)}"))
    if draft.mention:
        blocks.append(section(draft.mention))  # a configured user or group mention, not user input
    value = AlertAction(alert_id=alert_id, budget=draft.budget).model_dump_json()
    if draft.kind == "idle" and draft.endpoint:
        blocks.append(ActionsBlock(block_id=ALERT_ACTIONS_BLOCK, elements=[
            _stop_button(StopAction(alert_id=alert_id, endpoint=draft.endpoint), draft.headline),
            ButtonElement(text="Acknowledge", action_id=ACKNOWLEDGE, value=value),
            ButtonElement(text="Snooze for a day", action_id=SNOOZE, value=value),
        ]))
    elif draft.kind != "stop":  # a stop's result is a reply: nothing left to press
        blocks.append(ActionsBlock(block_id=ALERT_ACTIONS_BLOCK, elements=[
            ButtonElement(text="Acknowledge", action_id=ACKNOWLEDGE, value=value, style="primary"),
            ButtonElement(text="Snooze for a day", action_id=SNOOZE, value=value),
            ButtonElement(text="Show breakdown", action_id=BREAKDOWN, value=value),
        ]))
    text = escape(f"{draft.headline}. " + " ".join(draft.details))
    return text[:3000], to_dicts(blocks)


def _stop_button(action: StopAction, headline: str) -> ButtonElement:
    """Stop endpoint, with Slack's confirmation dialog before the click is sent."""
    confirm = ConfirmObject(
        title="Stop this endpoint?",
        text=PlainTextObject(text=clip(f"{headline}. Stopping it ends its billing and its serving; "
                                       "it can be started again in together.ai.", 300), emoji=False),
        confirm="Stop it", deny="Keep it running", style="danger",
    )
    return ButtonElement(text="Stop endpoint", action_id=STOP_ENDPOINT, value=action.model_dump_json(),
                         style="danger", confirm=confirm)


def slack_time(moment: datetime) -> str:
    """A time each reader sees in their own zone (Slack's date formatting), UTC as the fallback."""
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} at {{time}}|{moment:%Y-%m-%d %H:%M} UTC>"


def stopped_blocks(original: list[dict[str, Any]], user_id: str, at: datetime, state: str | None) -> list[dict[str, Any]]:
    """The idle alert once its endpoint is stopped: no buttons, and who stopped it when."""
    kept = [b for b in original if b.get("type") != "actions"]
    said = f" together.ai says {escape(state)}." if state else ""
    return kept + [context(f":octagonal_sign: Stopped by <@{escape(user_id)}> {slack_time(at)}.{said}").to_dict()]


def already_stopped_text(endpoint: str, by: str, at: datetime) -> str:
    """The private answer to a Stop click on an endpoint already stopped (by a person or a budget)."""
    who = f"budget {escape(by.removeprefix('budget:'))}" if by.startswith("budget:") else f"<@{escape(by)}>"
    return f"{escape(endpoint)} was already stopped by {who} {slack_time(at)}; nothing more was sent."


def stop_failed_text(endpoint: str, reason: str) -> str:
    """The thread reply when together.ai did not stop the endpoint."""
    return (f":warning: Could not stop *{escape(endpoint)}*: {escape(reason)} Nothing was retried; "
            "the endpoint keeps running (and billing) until it is stopped.")


def acknowledged_blocks(original: list[dict[str, Any]], user_id: str, action: str) -> list[dict[str, Any]]:
    """The alert after a button: the same blocks with the buttons replaced by who did what."""
    kept = [b for b in original if b.get("type") != "actions"]
    return kept + [context(f"{escape(action)} by <@{escape(user_id)}>").to_dict()]


def breakdown_blocks(title: str, rows: list[tuple[str, Decimal]], total: Decimal) -> list[dict[str, Any]]:
    """The ephemeral breakdown: top models and dimensions this month."""
    lines = [f"• {escape(label)}: {usd(amount)} ({percent(amount / total) if total else '0%'})" for label, amount in rows]
    blocks: list[Block] = [header(title)]
    blocks.extend(line_sections(lines or ["No spend recorded in this scope this month."], max_blocks=10))
    return to_dicts(blocks)


def budget_list_blocks(budgets: list[tuple[BudgetSpec, Decimal]]) -> list[dict[str, Any]]:
    """`/budget list`: each budget with its scope, spend this month and a bar."""
    if not budgets:
        return to_dicts([section("No budgets yet. An admin can add one:\n```/budget set llama-prod 5000 "
                                 "model=llama-3.3-70b project=search #alerts```")])
    lines = []
    for spec, spend in budgets:
        lines.append(f"*{escape(spec.name)}* {usd(spend)} of {usd(spec.amount)} · {escape(spec.describe_scope())}\n"
                     f"`{progress_bar(spend / spec.amount)}` thresholds {', '.join(f'{t}%' for t in spec.thresholds)}"
                     + (f" → <#{escape(spec.channel)}>" if spec.channel else ""))
    return to_dicts([header("Budgets this month"), *line_sections(lines, max_blocks=45, more_label="more budgets")])


def budget_saved_blocks(spec: BudgetSpec, created: bool) -> list[dict[str, Any]]:
    verb = "created" if created else "updated"
    text = (f"Budget *{escape(spec.name)}* {verb}: {usd(spec.amount)} a month for {escape(spec.describe_scope())}, "
            f"alerting at {', '.join(f'{t}%' for t in spec.thresholds)}"
            + (f" in <#{escape(spec.channel)}>" if spec.channel else "") + ".")
    if spec.stops_endpoints:
        text += " When it is spent, the dedicated endpoints in its scope are stopped."
    return to_dicts([section(text)])
