"""Views for `/costquote`: pure functions from a QuoteResult (or an error) to Block Kit and text."""

from __future__ import annotations

from decimal import Decimal

from slack_sdk.models.blocks import Block, DividerBlock

from bot.views.blocks import (
    MAX_BLOCKS,
    context,
    escape,
    fields_section,
    header,
    line_sections,
    plain_section,
    section,
)
from bot.views.dedicated import dedicated_lines
from pricing.lexicon import EXAMPLES
from pricing.money import count, per_million, percent, unit_usd, usd
from pricing.quote import ModelQuote, QuoteResult


def _shape(q: ModelQuote) -> str:
    cached = f" ({count(q.cached_input_tokens)} cached)" if q.cached_input_tokens else ""
    volume = f" × {count(q.requests_per_month)} requests/month" if q.requests_per_month is not None else ""
    return f"{count(q.input_tokens)} in{cached} + {count(q.output_tokens)} out tokens{volume}"


def _rates(q: ModelQuote) -> str:
    p = q.price
    cached = f", {per_million(p.cached_input)} cached" if p.cached_input is not None else ""
    return f"{per_million(p.input)} in / {per_million(p.output)} out{cached} ({p.source})"


def _money_line(per_request: Decimal, monthly: Decimal | None) -> str:
    line = f"{unit_usd(per_request)} / request"
    return line + (f"\n{usd(monthly)} / month" if monthly is not None else "")


def quote_blocks(result: QuoteResult) -> list[Block]:
    """The answer to a quote: one model in detail, or several compared by monthly cost."""
    if result.cluster is not None:
        return cluster_blocks(result)
    if result.request.kind == "compare":
        return compare_blocks(result)
    q = result.quotes[0]
    blocks: list[Block] = [
        header(f"Cost quote: {q.label}"),
        section(f"*{escape(q.label)}* on {escape(q.price.provider)} · {_rates(q)}\n{_shape(q)}"),
    ]
    fields = [f"*Serverless*\n{_money_line(q.serverless.per_request, q.serverless.monthly)}"]
    if q.batch is not None:
        saving = q.batch_saving or Decimal(0)
        fields.append(
            f"*Batch ({percent(q.batch_saving_fraction or Decimal(0))} off)*\n"
            f"{_money_line(q.batch.per_request, q.batch.monthly)}\nsaves {usd(saving) if q.batch.monthly is not None else unit_usd(saving)}"
            + ("/month" if q.batch.monthly is not None else "/request")
        )
    else:
        fields.append("*Batch*\nnot served for this model")
    blocks.append(fields_section(fields))
    dedicated = dedicated_lines(q, escape=escape)
    if dedicated:
        blocks.append(section("\n".join(dedicated)))
    notes = []
    if q.serverless.monthly is not None:
        notes.append(f"Cheapest: *{q.cheapest}*.")
    else:
        notes.append("Add a volume (e.g. `x 2M/mo` or `100k/day`) for monthly and dedicated costs.")
    if q.runners_up:
        notes.append("Also matched: " + ", ".join(escape(r) for r in q.runners_up) + ".")
    notes.extend(escape(n) for n in result.notes)
    blocks.append(context(" ".join(notes)))
    return blocks


def compare_blocks(result: QuoteResult) -> list[Block]:
    """Models sorted by monthly cost, packed to stay inside 50 blocks and 3,000 characters a section."""
    first = result.quotes[0]
    blocks: list[Block] = [
        header(f"Cost comparison ({len(result.quotes)} models)"),
        section(_shape(first)),
    ]
    lines = []
    for rank, q in enumerate(result.quotes, start=1):
        cost = usd(q.serverless.monthly) + "/month" if q.serverless.monthly is not None else unit_usd(q.serverless.per_request) + "/request"
        batch = ""
        if q.batch is not None:
            batch = f" · batch {usd(q.batch.monthly) if q.batch.monthly is not None else unit_usd(q.batch.per_request)}"
        else:
            batch = " · no batch"
        dedicated = ""
        if q.dedicated is not None and q.capacity is not None:
            dedicated = (f" · dedicated {usd(q.dedicated.monthly_cost)}/month on "
                         f"{q.dedicated.gpus}× {escape(q.capacity.gpu_label)}")
        elif q.dedicated_note:
            dedicated = " · no dedicated estimate"
        lines.append(f"{rank}. *{escape(q.label)}* {cost}{batch}{dedicated}")
    blocks.extend(line_sections(lines, max_blocks=MAX_BLOCKS - 3, more_label="more models"))
    cheapest = result.quotes[0]
    unsized = [q.label for q in result.quotes if q.dedicated is None and q.dedicated_note]
    why = ""
    if unsized:
        named = ", ".join(escape(label) for label in unsized[:5])
        named += f" and {len(unsized) - 5} more" if len(unsized) > 5 else ""
        why = f"No dedicated estimate for {named}; quote one alone to see why. "
    blocks.append(context(f"Cheapest: *{escape(cheapest.label)}* on {cheapest.cheapest}. " + why
                          + " ".join(escape(n) for n in result.notes)))
    return blocks


def cluster_blocks(result: QuoteResult) -> list[Block]:
    c = result.cluster
    assert c is not None
    text = f"{c.gpus} GPUs × {count(c.hours)} h at {usd(c.per_gpu_hour)}/GPU-hour = *{usd(c.cost)}*"
    if c.effective_per_million is not None and c.tokens is not None:
        text += f"\n{count(c.tokens)} tokens at the stated throughput: {per_million(c.effective_per_million)} effective"
    return [header("GPU cluster quote"), section(text)]


def quote_text(result: QuoteResult) -> str:
    """The plain-text fallback (notifications, screen readers, the terminal)."""
    if result.cluster is not None:
        c = result.cluster
        return f"GPU cluster: {c.gpus} GPUs x {count(c.hours)} h = {usd(c.cost)}"
    parts = []
    for q in result.quotes:
        monthly = q.serverless.monthly is not None
        show, unit = (usd, "/month") if monthly else (unit_usd, "/request")
        amount = q.serverless.monthly if monthly else q.serverless.per_request
        batch = ""
        if q.batch is not None:
            b = q.batch.monthly if monthly else q.batch.per_request
            batch = f", batch {show(b)}{unit}"
        parts.append(f"{q.label}: {show(amount)}{unit} serverless{batch}")
    return "; ".join(parts)


def error_blocks(message: str, example: str) -> list[Block]:
    """What was wrong and a corrected example; the message is plain text, so nothing in it renders."""
    return [
        plain_section(f"Sorry, I couldn't quote that: {message}"),
        section(f"Try:\n```/costquote {escape(example)}```"),
        context("`/costquote help` shows everything it understands."),
    ]


def error_text(message: str, example: str) -> str:
    """The fallback of a refusal; what the user typed is in it, made inert."""
    return escape(f"Sorry, I couldn't quote that: {message.rstrip('.?!')}. Try: /costquote {example}")


HELP_TEXT = """\
/costquote MODEL IN/OUT [x VOLUME] [dedicated GPU] [public]
• tokens per request: `3k/1k`, `4000 1000` or `in=3000 out=1000` (add `cached=500` for cached input)
• volume: `x 2M/mo`, `100k/day`, `1,000 per hour`, `50M tokens/day`; a month is 30.44 days unless you add `month=2026-02`
• numbers take k, M and B and thousands separators
• models match forgivingly: `maestro`, `llama-3.3-70b`, `deepseek-v3`; other providers as `openai/gpt-4o`
• `compare A B C 3k/1k 100k/day` ranks models by monthly cost
• `dedicated h100` (or h200, b200) sizes a dedicated endpoint: GPUs needed and whether memory or throughput sets it, \
monthly cost, effective $/1M, break-even against serverless and batch, time to first token and output speed \
(estimates; `util=60%` plans for a utilization)
• `rate=0.90/3.30` quotes your own $/1M rates without a model
• `cluster 8 h100 720h 20k tok/s` prices a GPU cluster by the GPU-hour
• `public` posts the answer to the channel; otherwise only you see it"""


def help_blocks() -> list[Block]:
    examples = "\n".join(f"/costquote {e}" for e in EXAMPLES)
    return [
        header("/costquote: what will it cost?"),
        section(HELP_TEXT),
        DividerBlock(),
        section(f"*Examples*\n```{examples}```"),
    ]


def help_text() -> str:
    return HELP_TEXT + "\n\nExamples:\n" + "\n".join(f"/costquote {e}" for e in EXAMPLES)
