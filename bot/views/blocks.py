"""Block Kit building helpers shared by every view: escaping and staying inside Slack's limits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

MAX_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_SECTION_CHARS = 3000
MAX_HEADER_CHARS = 150
MAX_FIELD_CHARS = 2000
MAX_FIELDS = 10
MAX_CONTEXT_ELEMENTS = 10


def escape(text: str) -> str:
    """Make text inert in mrkdwn: no mentions, links or channel pings."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def header(text: str) -> HeaderBlock:
    return HeaderBlock(text=PlainTextObject(text=clip(text, MAX_HEADER_CHARS), emoji=False))


def section(markdown: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=clip(markdown, MAX_SECTION_CHARS)))


def plain_section(text: str) -> SectionBlock:
    """User-influenced text shown verbatim: plain_text renders no formatting and no mentions."""
    return SectionBlock(text=PlainTextObject(text=clip(text, MAX_SECTION_CHARS), emoji=False))


def fields_section(fields: Sequence[str]) -> SectionBlock:
    return SectionBlock(
        fields=[MarkdownTextObject(text=clip(f, MAX_FIELD_CHARS)) for f in fields[:MAX_FIELDS]]
    )


def context(*texts: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=clip(t, MAX_SECTION_CHARS)) for t in texts[:MAX_CONTEXT_ELEMENTS]])


def line_sections(lines: Iterable[str], *, max_blocks: int, more_label: str = "more") -> list[SectionBlock]:
    """Pack lines into as few sections as fit 3,000 characters each, in at most `max_blocks`
    blocks; whatever does not fit becomes "…and N more"."""
    lines = list(lines)
    budget = MAX_SECTION_CHARS - 40  # room for the "…and N more" line
    sections: list[list[str]] = [[]]
    used = 0
    shown = 0
    for line in lines:
        line = clip(line, budget)
        if used + len(line) + 1 > budget:
            if len(sections) >= max_blocks:
                break
            sections.append([])
            used = 0
        sections[-1].append(line)
        used += len(line) + 1
        shown += 1
    hidden = len(lines) - shown
    if hidden:
        sections[-1].append(f"…and {hidden} {more_label}")
    return [section("\n".join(chunk)) for chunk in sections if chunk]


def to_dicts(blocks: Iterable[Block]) -> list[dict]:
    return [block.to_dict() for block in blocks]
