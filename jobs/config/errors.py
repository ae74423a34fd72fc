"""The one base class for a person's mistake in a command: Slack answers it to them (Bolt's
error handler, `bot.views.refusals`), never as "something went wrong"."""

from __future__ import annotations


class UserError(ValueError):
    """What was wrong, in words for the person who typed it, and an example that works (or None).

    A subclass sets `example` to the one its mistakes show unless the raiser gives another."""

    example: str | None = None

    def __init__(self, message: str, example: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if example is not None:
            self.example = example
