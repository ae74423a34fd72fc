"""The words of a `/costquote`: numbers (`3k`, `2M`, `1,000`), token counts, periods and volumes,
a quote split into words, and the error that says what was wrong with a corrected example.

Everything here reads one word (or a few joined into one); pricing.grammar puts them together."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from decimal import Context, Decimal, InvalidOperation, localcontext

MAX_TOKENS_PER_REQUEST = 10_000_000
MAX_MAGNITUDE = 18  # no number a quote takes is larger than 1e18
MAX_EXPONENT = 40  # 1e40 or 1e-40 is already out of range: say so before Decimal tries 1e999999999
NUMBERS = Context(prec=60, traps=[InvalidOperation])  # exact for every number that passes the checks

EXAMPLES = (
    "llama-3.3-70b in=3000 out=1000 requests=2M/month",
    "maestro 3k/1k x 2M/mo",
    "llama-3.3-70b 4000 1000",
    "compare llama-3.3-70b deepseek-v3 gpt-oss-120b 3k/1k 100k/day",
    "qwen3-235b 2k/500 50M tokens/day dedicated h100",
    "in=3000 out=1000 rate=0.90/3.30 requests=2M/month",
    "cluster 8 h100 720h 20k tok/s",
)

SUFFIXES = {"k": Decimal(10) ** 3, "m": Decimal(10) ** 6, "b": Decimal(10) ** 9}
PERIODS = {
    "h": "hour", "hr": "hour", "hrs": "hour", "hour": "hour", "hours": "hour", "hourly": "hour",
    "d": "day", "day": "day", "days": "day", "daily": "day",
    "w": "week", "wk": "week", "wks": "week", "week": "week", "weeks": "week", "weekly": "week",
    "mo": "month", "mon": "month", "mth": "month", "month": "month", "months": "month", "monthly": "month",
}
REQUEST_WORDS = {"req", "reqs", "request", "requests", "calls", "call", "rq"}
TOKEN_WORDS = {"tok", "toks", "token", "tokens"}
MONTH_NAMES = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
MONTH_NAMES.update({name.lower(): i for i, name in enumerate(calendar.month_abbr) if name})

NUMBER = r"[-+]?(?:\d[\d,_]*(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?[kmb]?"
NUMBER_RE = re.compile(rf"^{NUMBER}$", re.IGNORECASE)


class QuoteSyntaxError(ValueError):
    """What was wrong with a quote, and a corrected example to copy."""

    def __init__(self, message: str, example: str = EXAMPLES[0]) -> None:
        super().__init__(message)
        self.message = message
        self.example = example


@dataclass(frozen=True)
class Volume:
    """How much work a month holds: requests or tokens, and how it was stated."""

    amount: Decimal          # per month
    unit: str                # "requests" or "tokens"
    stated: str              # e.g. "100k/day"


def parse_number(text: str, what: str) -> Decimal:
    """`3k`, `2M`, `1,000`, `0.5B` → Decimal; anything else is a QuoteSyntaxError naming `what`."""
    raw = text.strip()
    lowered = raw.lower()
    if lowered in {"nan", "inf", "-inf", "+inf", "infinity"}:
        raise QuoteSyntaxError(f"{what} must be a number, not {lowered}")
    if not NUMBER_RE.match(raw):
        raise QuoteSyntaxError(f"{what} must be a number like 3000, 3k or 2M")
    multiplier = Decimal(1)
    if lowered[-1] in SUFFIXES:
        multiplier = SUFFIXES[lowered[-1]]
        lowered = lowered[:-1]
    digits = lowered.replace(",", "").replace("_", "")
    mantissa, _, exponent = digits.partition("e")
    if exponent and abs(int(exponent)) > MAX_EXPONENT:
        raise QuoteSyntaxError(f"{what} has an exponent out of range (e{exponent[:12]}); "
                               f"numbers here go up to 1e{MAX_MAGNITUDE}, e.g. 3000, 3k or 2M")
    if len(mantissa.lstrip("+-0").split(".")[0]) > MAX_MAGNITUDE + 1:
        raise QuoteSyntaxError(f"{what} is too large; numbers here go up to 1e{MAX_MAGNITUDE}")
    try:
        with localcontext(NUMBERS):
            value = Decimal(digits) * multiplier
    except (InvalidOperation, ArithmeticError):
        raise QuoteSyntaxError(f"{what} must be a number like 3000, 3k or 2M") from None
    if not value.is_finite():
        raise QuoteSyntaxError(f"{what} must be a finite number")
    if value < 0:
        raise QuoteSyntaxError(f"{what} cannot be negative")
    if value.adjusted() > MAX_MAGNITUDE:
        raise QuoteSyntaxError(f"{what} is too large; numbers here go up to 1e{MAX_MAGNITUDE}")
    return value


def parse_tokens(text: str, what: str) -> int:
    value = parse_number(text, what)
    if value != value.to_integral_value():
        raise QuoteSyntaxError(f"{what} must be a whole number of tokens")
    if value > MAX_TOKENS_PER_REQUEST:
        raise QuoteSyntaxError(f"{what} is more than {MAX_TOKENS_PER_REQUEST:,} tokens per request")
    return int(value)


def parse_period(word: str) -> str:
    period = PERIODS.get(word.lower())
    if period is None:
        raise QuoteSyntaxError(f"the volume period must be hour, day, week or month (not {quoted(word, 20)})",
                               "maestro 3k/1k x 2M/mo")
    return period


def per_month(amount: Decimal, period: str, days_in_month: Decimal) -> Decimal:
    factor = {"hour": days_in_month * 24, "day": days_in_month, "week": days_in_month / 7, "month": Decimal(1)}
    return amount * factor[period]


def month_days(text: str) -> Decimal:
    """`month=feb`, `month=2026-02` → that month's days."""
    lowered = text.lower()
    match = re.match(r"^(\d{4})-(\d{1,2})$", lowered)
    if match and 1 <= int(match.group(2)) <= 12:
        return Decimal(calendar.monthrange(int(match.group(1)), int(match.group(2)))[1])
    if lowered in MONTH_NAMES:
        return Decimal(calendar.monthrange(2025, MONTH_NAMES[lowered])[1])  # a common year
    raise QuoteSyntaxError("month= takes a month name or YYYY-MM, e.g. month=2026-02",
                           "maestro 3k/1k x 2M/mo month=2026-02")


def tokenize(text: str) -> list[str]:
    """Split on whitespace, keeping `per day`, `a month`, `tokens/day` forms together."""
    text = text.replace("×", " x ").replace("\u00a0", " ")
    words = text.split()
    merged: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        nxt = words[i + 1].lower() if i + 1 < len(words) else ""
        if word.lower() in {"per", "a", "an", "every", "each"} and nxt in PERIODS and merged:
            merged[-1] = f"{merged[-1]}/{nxt}"
            i += 2
            continue
        if word.lower() in REQUEST_WORDS | TOKEN_WORDS and nxt.startswith("/") and merged:
            merged[-1] = f"{merged[-1]}{word}{nxt}"
            i += 2
            continue
        if word.startswith("/") and merged and word[1:].lower() in PERIODS:
            merged[-1] = f"{merged[-1]}{word}"
            i += 1
            continue
        merged.append(word)
        i += 1
    # "50M tokens/day", "2M requests/mo": fold the unit word into the number before it.
    folded: list[str] = []
    for word in merged:
        lowered = word.lower()
        unit, _, rest = lowered.partition("/")
        if folded and NUMBER_RE.match(folded[-1]) and unit in REQUEST_WORDS | TOKEN_WORDS:
            folded[-1] = f"{folded[-1]}{unit}" + (f"/{rest}" if rest else "")
            continue
        folded.append(word)
    return folded


def parse_volume(text: str, days_in_month: Decimal) -> Volume | None:
    """`2M/mo`, `100k/day`, `50Mtokens/day`, `2Mrequests/month`; None if it is not a volume."""
    match = re.match(rf"^({NUMBER}?)(req(?:uests?|s)?|calls?|tok(?:ens?|s)?)?/([a-z]+)$", text, re.IGNORECASE)
    if not match or not match.group(1):
        return None
    amount = parse_number(match.group(1), "the volume")
    unit = "tokens" if (match.group(2) or "").lower().startswith("tok") else "requests"
    period = parse_period(match.group(3))
    return Volume(per_month(amount, period, days_in_month), unit, text)


_UNSHOWABLE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def quoted(text: str, limit: int = 40) -> str:
    """User text quoted and clipped for an error message (views escape it for Slack); control
    characters and lone surrogates, which no message may carry, shown as `?`."""
    return "'" + _UNSHOWABLE.sub("?", text[:limit]) + ("…" if len(text) > limit else "") + "'"
