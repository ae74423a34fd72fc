"""The `/costquote` grammar, shared by Slack and the command line.

    llama-3.3-70b in=3000 out=1000 requests=2M/month
    maestro 3k/1k x 2M/mo
    compare llama-3.3-70b deepseek-v3 gpt-oss-120b 3k/1k 100k/day
    qwen3-235b 2k/500 50M tokens/day dedicated h100
    in=3000 out=1000 rate=0.90/3.30 requests=2M/month
    cluster 8 h100 720h 20k tok/s
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field
from decimal import Context, Decimal, InvalidOperation, localcontext

from pricing.costs import DAYS_PER_MONTH

MAX_TOKENS_PER_REQUEST = 10_000_000
MAX_MONTHLY_REQUESTS = Decimal(10) ** 13
MAX_MONTHLY_TOKENS = Decimal(10) ** 16
MAX_RATE = Decimal(100_000)
MAX_MODELS = 60
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
PAIR_RE = re.compile(rf"^({NUMBER})/({NUMBER})$", re.IGNORECASE)
PER_RE = re.compile(rf"^({NUMBER})?(?:(req(?:uests?|s)?|calls?|tok(?:ens?|s)?))?/([a-z]+)$", re.IGNORECASE)
KEY_RE = re.compile(r"^([a-z_]+)[=:](.*)$", re.IGNORECASE)


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


@dataclass
class QuoteRequest:
    """A parsed `/costquote`."""

    kind: str = "quote"      # quote, compare, cluster, help
    models: list[str] = field(default_factory=list)
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_input_tokens: int = 0
    volume: Volume | None = None
    rate: tuple[Decimal, Decimal] | None = None
    dedicated: bool = False
    gpu: str | None = None
    utilization: Decimal | None = None
    public: bool = False
    days_in_month: Decimal = DAYS_PER_MONTH
    cluster_gpus: int | None = None
    cluster_hours: Decimal | None = None
    cluster_throughput: Decimal | None = None


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


def _tokens(text: str, what: str) -> int:
    value = parse_number(text, what)
    if value != value.to_integral_value():
        raise QuoteSyntaxError(f"{what} must be a whole number of tokens")
    if value > MAX_TOKENS_PER_REQUEST:
        raise QuoteSyntaxError(f"{what} is more than {MAX_TOKENS_PER_REQUEST:,} tokens per request")
    return int(value)


def _period(word: str) -> str:
    period = PERIODS.get(word.lower())
    if period is None:
        raise QuoteSyntaxError(f"the volume period must be hour, day, week or month (not {quoted(word, 20)})",
                               "maestro 3k/1k x 2M/mo")
    return period


def _per_month(amount: Decimal, period: str, days_in_month: Decimal) -> Decimal:
    factor = {"hour": days_in_month * 24, "day": days_in_month, "week": days_in_month / 7, "month": Decimal(1)}
    return amount * factor[period]


def _month_days(text: str) -> Decimal:
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


def _volume(text: str, days_in_month: Decimal) -> Volume | None:
    """`2M/mo`, `100k/day`, `50Mtokens/day`, `2Mrequests/month`; None if it is not a volume."""
    match = re.match(rf"^({NUMBER}?)(req(?:uests?|s)?|calls?|tok(?:ens?|s)?)?/([a-z]+)$", text, re.IGNORECASE)
    if not match or not match.group(1):
        return None
    amount = parse_number(match.group(1), "the volume")
    unit = "tokens" if (match.group(2) or "").lower().startswith("tok") else "requests"
    period = _period(match.group(3))
    return Volume(_per_month(amount, period, days_in_month), unit, text)


def parse(text: str) -> QuoteRequest:
    """Parse a quote; raises QuoteSyntaxError with a corrected example."""
    if len(text) > 2000:
        raise QuoteSyntaxError("that quote is too long; ask about at most a few models at a time")
    words = tokenize(text)
    request = QuoteRequest()
    if not words or words[0].lower() in {"help", "-h", "--help", "?"}:
        request.kind = "help"
        return request
    # month= changes how a per-day volume becomes a month, so read it first.
    for word in words:
        key = KEY_RE.match(word)
        if key and key.group(1).lower() == "month":
            request.days_in_month = _month_days(key.group(2))
    first = words[0].lower()
    if first in {"compare", "vs", "cmp"}:
        request.kind = "compare"
        words = words[1:]
    elif first == "cluster":
        return _parse_cluster(words[1:], request)

    bare_numbers: list[str] = []
    expect_volume = False
    i = 0
    while i < len(words):
        word = words[i]
        lowered = word.lower()
        i += 1
        if lowered in {"public", "--public"}:
            request.public = True
            continue
        if lowered in {"x", "*", "at", "for", "with"}:
            expect_volume = lowered in {"x", "*"}
            continue
        if lowered in {"dedicated", "ded"}:
            request.dedicated = True
            if i < len(words) and not NUMBER_RE.match(words[i]) and "=" not in words[i] and words[i].lower() not in {"public"}:
                request.gpu = words[i].lower()
                i += 1
            continue
        key = KEY_RE.match(word)
        if key:
            _apply_key(request, key.group(1).lower(), key.group(2))
            continue
        volume = _volume(word, request.days_in_month)
        if volume is not None:
            _set_volume(request, volume)
            expect_volume = False
            continue
        pair = PAIR_RE.match(word) or re.match(r"^([-+]?(?:nan|inf\w*|[\d.,]+\w*))/([-+]?[\w.,]+)$", word, re.I)
        if pair and not (PER_RE.match(word) and PERIODS.get(pair.group(2).lower())):
            _set_tokens(request, pair.group(1), pair.group(2))
            continue
        if NUMBER_RE.match(word) or re.match(r"^[-+]?(nan|inf|infinity)$", lowered):
            if expect_volume:
                amount = parse_number(word, "the volume")
                _set_volume(request, Volume(amount, "requests", f"{word}/month"))
                expect_volume = False
            else:
                bare_numbers.append(word)
            continue
        if lowered.rstrip("s") in {"token", "tok", "request", "req", "call"}:
            raise QuoteSyntaxError("put the volume's period after it, like 50M tokens/day or 2M/month",
                                   "qwen3-235b 2k/500 50M tokens/day")
        if "/" in word and not re.match(r"^[\w.\-]+/[\w.\-]+$", word):
            raise QuoteSyntaxError(f"could not read {_inert(word)!s}; volumes look like 2M/month or 100k/day",
                                   "maestro 3k/1k x 2M/mo")
        request.models.append(word)

    if bare_numbers:
        if request.input_tokens is not None or len(bare_numbers) > 3:
            raise QuoteSyntaxError("too many numbers; give input and output tokens, then a volume like 2M/month",
                                   "llama-3.3-70b 4000 1000 2M/month")
        if len(bare_numbers) == 1:
            raise QuoteSyntaxError("give both input and output tokens, e.g. 4000 1000 or 4k/1k",
                                   "llama-3.3-70b 4000 1000")
        _set_tokens(request, bare_numbers[0], bare_numbers[1])
        if len(bare_numbers) == 3:
            _set_volume(request, Volume(parse_number(bare_numbers[2], "the volume"), "requests", f"{bare_numbers[2]}/month"))
    return _validate(request)


def _parse_cluster(words: list[str], request: QuoteRequest) -> QuoteRequest:
    """`cluster 8 h100 720h [20k tok/s]` (GPU count, GPU type, hours, optional cluster throughput)."""
    request.kind = "cluster"
    example = "cluster 8 h100 720h 20k tok/s"
    joined = " ".join(words).lower().replace("tok/s", "tok/s ").replace("tokens/s", "tok/s ")
    for word in joined.split():
        if word in {"public", "--public"}:
            request.public = True
        elif m := re.match(rf"^({NUMBER})(?:tok/s|t/s)$", word):
            request.cluster_throughput = parse_number(m.group(1), "the cluster throughput")
        elif m := re.match(rf"^({NUMBER})(h|hr|hrs|hours?)$", word):
            request.cluster_hours = parse_number(m.group(1), "the hours")
        elif m := re.match(r"^(\d+)x([a-z]\w*)$", word):
            request.cluster_gpus, request.gpu = int(m.group(1)), m.group(2)
        elif NUMBER_RE.match(word) and request.cluster_gpus is None:
            request.cluster_gpus = int(parse_number(word, "the GPU count"))
        elif re.match(r"^[a-z]\w*$", word) and request.gpu is None:
            request.gpu = word
        elif word in {"tok/s", "x", "for", "at", "gpus", "gpu"}:
            continue
        else:
            raise QuoteSyntaxError(f"could not read {_inert(word)} in a cluster quote", example)
    if not request.cluster_gpus or request.cluster_gpus > 100_000:
        raise QuoteSyntaxError("a cluster needs a GPU count between 1 and 100,000", example)
    if not request.cluster_hours or request.cluster_hours > 24 * 366 * 10:
        raise QuoteSyntaxError("a cluster needs its hours, e.g. 720h", example)
    if request.gpu is None:
        raise QuoteSyntaxError("a cluster needs a GPU type, e.g. h100", example)
    return request


def _apply_key(request: QuoteRequest, key: str, value: str) -> None:
    if key in {"in", "input", "prompt", "i"}:
        request.input_tokens = _tokens(value, "in")
    elif key in {"out", "output", "completion", "o"}:
        request.output_tokens = _tokens(value, "out")
    elif key in {"cached", "cache", "cached_in"}:
        request.cached_input_tokens = _tokens(value, "cached")
    elif key in {"requests", "reqs", "req", "volume", "calls", "tokens"}:
        volume = _volume(value if "/" in value else f"{value}/month", request.days_in_month)
        if volume is None:
            raise QuoteSyntaxError(f"{key}= takes a volume like 2M/month or 100k/day")
        if key == "tokens":
            volume = Volume(volume.amount, "tokens", volume.stated)
        _set_volume(request, volume)
    elif key == "rate":
        parts = value.split("/")
        if len(parts) != 2:
            raise QuoteSyntaxError("rate= takes input/output USD per 1M tokens, e.g. rate=0.90/3.30",
                                   EXAMPLES[5])
        rates = (parse_number(parts[0], "the input rate"), parse_number(parts[1], "the output rate"))
        if any(r > MAX_RATE for r in rates):
            raise QuoteSyntaxError("rates are USD per 1M tokens; that one is implausibly high", EXAMPLES[5])
        request.rate = rates
    elif key in {"util", "utilization", "utilisation"}:
        value = value.rstrip("%")
        util = parse_number(value, "utilization")
        util = util / 100 if util > 1 else util
        if not 0 < util <= 1:
            raise QuoteSyntaxError("utilization is a percentage between 1 and 100, e.g. util=60%")
        request.utilization = util
    elif key in {"gpu", "hardware"}:
        request.dedicated = True
        request.gpu = value.lower()
    elif key == "month":
        pass  # read before the loop
    else:
        raise QuoteSyntaxError(
            f"unknown setting {_inert(key)}=; use in=, out=, cached=, requests=, rate=, util= or gpu="
        )


def _set_tokens(request: QuoteRequest, input_text: str, output_text: str) -> None:
    if request.input_tokens is not None or request.output_tokens is not None:
        raise QuoteSyntaxError("tokens are given twice; say them once, e.g. 3k/1k or in=3000 out=1000")
    request.input_tokens = _tokens(input_text, "input tokens")
    request.output_tokens = _tokens(output_text, "output tokens")


def _set_volume(request: QuoteRequest, volume: Volume) -> None:
    if request.volume is not None:
        raise QuoteSyntaxError("the volume is given twice; say it once, e.g. 2M/month")
    if volume.amount <= 0:
        raise QuoteSyntaxError("the volume must be more than 0, e.g. 2M/month")
    if volume.amount < 1:
        raise QuoteSyntaxError(f"that volume is less than one {volume.unit.rstrip('s')} a month; check the number",
                               "maestro 3k/1k x 2M/mo")
    limit = MAX_MONTHLY_TOKENS if volume.unit == "tokens" else MAX_MONTHLY_REQUESTS
    if volume.amount > limit:
        raise QuoteSyntaxError(f"that volume is more than {limit:.0e} {volume.unit} a month; check the number")
    request.volume = volume


def _validate(request: QuoteRequest) -> QuoteRequest:
    if len(request.models) > MAX_MODELS:
        raise QuoteSyntaxError(f"compare at most {MAX_MODELS} models at a time")
    if request.kind == "compare" and len(request.models) < 2:
        raise QuoteSyntaxError("compare needs two or more models", EXAMPLES[3])
    if request.kind == "quote" and len(request.models) > 1:
        raise QuoteSyntaxError(
            f"which model? {len(request.models)} names given; to compare them, start with `compare`", EXAMPLES[3]
        )
    if not request.models and request.rate is None:
        raise QuoteSyntaxError("name a model, or give rate=IN/OUT in USD per 1M tokens", EXAMPLES[0])
    if request.models and request.rate is not None:
        raise QuoteSyntaxError("give a model or rate=, not both", EXAMPLES[5])
    if request.input_tokens is None and request.output_tokens is None:
        model = request.models[0] if request.models and _plain(request.models[0]) else "llama-3.3-70b"
        raise QuoteSyntaxError("how many tokens per request? add them as in/out, e.g. 3k/1k", f"{model} 3k/1k x 2M/mo")
    request.input_tokens = request.input_tokens or 0
    request.output_tokens = request.output_tokens or 0
    if request.input_tokens + request.output_tokens == 0:
        raise QuoteSyntaxError("a request needs some tokens; input and output cannot both be 0", EXAMPLES[2])
    if request.cached_input_tokens > request.input_tokens:
        raise QuoteSyntaxError("cached= counts input tokens served from cache, so it cannot exceed in=")
    if request.dedicated and request.volume is None:
        raise QuoteSyntaxError("a dedicated quote needs a volume, e.g. 50M tokens/day", EXAMPLES[4])
    return request


def _plain(name: str) -> bool:
    return bool(re.match(r"^[\w.\-/:]{1,80}$", name))


_UNSHOWABLE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def quoted(text: str, limit: int = 40) -> str:
    """User text quoted and clipped for an error message (views escape it for Slack); control
    characters and lone surrogates, which no message may carry, shown as `?`."""
    return "'" + _UNSHOWABLE.sub("?", text[:limit]) + ("…" if len(text) > limit else "") + "'"


_inert = quoted
