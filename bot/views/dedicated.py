"""The dedicated line of a quote as lines of text, for Slack's mrkdwn and the terminal alike.

It imports nothing of Slack's, so `budget-guard quote` stays quick to start."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING

from pricing.money import count, per_million, percent, usd

if TYPE_CHECKING:
    from pricing.quote import ModelQuote


SOURCES = {"estimate": "estimate", "measured": "your measured throughput", "default": "your default throughput"}


def dedicated_lines(q: ModelQuote, *, escape: Callable[[str], str] | None = None) -> list[str]:
    """The dedicated line of a quote, as lines of text: a heading that says what it is, the GPUs
    needed and what set that number, the money, break-even, and the latency the shape implies.
    Without a dedicated quote: the one sentence saying why (or nothing without a volume).
    Given Slack's `escape`, the lines are mrkdwn (bold, escaped); without it, plain text."""
    d, c = q.dedicated, q.capacity
    b = (lambda text: f"*{text}*") if escape else (lambda text: text)
    esc = escape or (lambda text: text)
    if d is None or c is None:
        return [f"{b('Dedicated endpoint:')} {esc(q.dedicated_note)}"] if q.dedicated_note else []
    replicas = f"{d.replicas} replica{_s(d.replicas)} × {d.group_gpus} GPU{_s(d.group_gpus)}"
    if d.set_by == "memory":
        why = f"set by memory ({esc(c.reason.removeprefix('memory: '))})"
    else:
        why = (f"set by throughput; memory needs {d.group_gpus} GPU{_s(d.group_gpus)} for one "
               f"({esc(c.reason.removeprefix('memory: '))})")
    output = (f"≈{count(c.output_tokens_per_second)} output tokens/s a replica "
              f"({count(c.tokens_per_second)} with input)" if c.output_tokens_per_second is not None
              else f"≈{count(c.tokens_per_second)} tokens/s a replica")
    lines = [
        b(f"Dedicated endpoint on {esc(c.gpu_label)} ({SOURCES[c.source]})"),
        f"GPUs needed: {b(str(d.gpus))} = {replicas}, {why}",
        f"Throughput: {output} at full load",
        f"Cost: {b(usd(d.monthly_cost) + '/month')}"
        + (f", {per_million(d.effective_per_million)} effective at {percent(d.utilization)} utilization"
           if d.effective_per_million is not None else ""),
        "Break-even: " + _break_even(d.break_even_tokens_per_month, "serverless")
        + (f"; {_break_even(d.batch_break_even_tokens_per_month, 'batch')}" if q.batch is not None else ""),
    ]
    if c.time_to_first_token is not None:
        speed = ""
        if c.output_speed is not None:
            full_load = c.output_speed_at_full_load
            full = f" ({count(full_load)} at full load)" if full_load is not None and full_load != c.output_speed else ""
            speed = f", then ≈{count(c.output_speed)} tokens/s at this load{full}"
        whose = "Per request" if c.is_estimate else "Per request (our estimate)"
        lines.append(f"{whose}: first token after ≈{_seconds(c.time_to_first_token)} of prefill on an idle endpoint "
                     f"(serving overhead and queueing come on top){speed}")
    return lines


def _s(n: int) -> str:
    return "s" if n != 1 else ""


def _break_even(volume: Decimal | None, against: str) -> str:
    if volume is None:
        return f"never cheaper than {against}"
    return f"{count(volume)} tokens/month vs {against}"


def _seconds(value: Decimal) -> str:
    return f"{value.normalize():f} s" if value < 10 else f"{count(value)} s"
