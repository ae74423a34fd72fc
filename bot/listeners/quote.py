"""`/costquote`: parse, price, render, answered inside the ack."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App

from bot.metrics import Metrics
from bot.views.blocks import to_dicts
from bot.views.quote import help_blocks, help_text, quote_blocks, quote_text
from jobs.config.context import Context
from pricing.grammar import parse
from pricing.quote import build_quote


def answer(text: str, context: Context) -> dict[str, Any]:
    """The ack payload for a quote: blocks, fallback text and visibility. A malformed quote raises
    QuoteSyntaxError, answered by Bolt's error handler (`bot.views.refusals`)."""
    request = parse(text)
    if request.kind == "help":
        return {"blocks": to_dicts(help_blocks()), "text": help_text(), "response_type": "ephemeral"}
    result = build_quote(request, context.catalog, default_gpu=context.settings.default_gpu)
    return {
        "blocks": to_dicts(quote_blocks(result)),
        "text": quote_text(result),
        "response_type": "in_channel" if request.public else "ephemeral",
    }


def register(app: App, context: Context, metrics: Metrics) -> None:
    """`/costquote`, each answer timed into the `quote` latency histogram."""

    @app.command("/costquote")
    def costquote(ack: Ack, command: dict[str, Any]) -> None:
        with metrics.timer("quote"):
            payload = answer(command.get("text") or "", context)
        ack(**payload)
