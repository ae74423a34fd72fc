"""What a person is told when a command of theirs is refused: the answer to a `UserError` (and to
pricing's `QuoteSyntaxError`, which cannot derive from it), given by Bolt's error handler as the
ack, or through `respond()` after it (`bot.listeners.lazy`)."""

from __future__ import annotations

from typing import Any

from bot.views.blocks import escape, plain_section, section, to_dicts
from bot.views.quote import error_blocks, error_text
from jobs.config.errors import UserError
from pricing.lexicon import QuoteSyntaxError


def refusal(error: BaseException) -> dict[str, Any] | None:
    """The ephemeral answer to a user's mistake; None for any other exception."""
    if isinstance(error, QuoteSyntaxError):
        return {"blocks": to_dicts(error_blocks(error.message, error.example)),
                "text": error_text(error.message, error.example), "response_type": "ephemeral"}
    if isinstance(error, UserError):
        blocks = [plain_section(f"Sorry, I can't do that: {error.message}")]
        if error.example:
            blocks.append(section(f"Try:\n```{escape(error.example)}```"))
        return {"blocks": to_dicts(blocks), "text": escape(f"Sorry, I can't do that: {error.message}"),
                "response_type": "ephemeral"}
    return None
