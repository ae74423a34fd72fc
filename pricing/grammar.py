"""The `/costquote` grammar, shared by Slack and the command line: words (pricing.lexicon) into a
`QuoteRequest`, checked whole.

    llama-3.3-70b in=3000 out=1000 requests=2M/month
    maestro 3k/1k x 2M/mo
    compare llama-3.3-70b deepseek-v3 gpt-oss-120b 3k/1k 100k/day
    qwen3-235b 2k/500 50M tokens/day dedicated h100
    in=3000 out=1000 rate=0.90/3.30 requests=2M/month
    cluster 8 h100 720h 20k tok/s
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal

from pricing.costs import DAYS_PER_MONTH
from pricing.lexicon import (
    EXAMPLES,
    NUMBER,
    NUMBER_RE,
    PERIODS,
    QuoteSyntaxError,
    Volume,
    month_days,
    parse_number,
    parse_tokens,
    parse_volume,
    quoted,
    tokenize,
)

MAX_MONTHLY_REQUESTS = Decimal(10) ** 13
MAX_MONTHLY_TOKENS = Decimal(10) ** 16
MAX_RATE = Decimal(100_000)
MAX_MODELS = 60

PAIR_RE = re.compile(rf"^({NUMBER})/({NUMBER})$", re.IGNORECASE)
PER_RE = re.compile(rf"^({NUMBER})?(?:(req(?:uests?|s)?|calls?|tok(?:ens?|s)?))?/([a-z]+)$", re.IGNORECASE)
KEY_RE = re.compile(r"^([a-z_]+)[=:](.*)$", re.IGNORECASE)


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
            request.days_in_month = month_days(key.group(2))
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
        volume = parse_volume(word, request.days_in_month)
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
            raise QuoteSyntaxError(f"could not read {quoted(word)!s}; volumes look like 2M/month or 100k/day",
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
            raise QuoteSyntaxError(f"could not read {quoted(word)} in a cluster quote", example)
    if not request.cluster_gpus or request.cluster_gpus > 100_000:
        raise QuoteSyntaxError("a cluster needs a GPU count between 1 and 100,000", example)
    if not request.cluster_hours or request.cluster_hours > 24 * 366 * 10:
        raise QuoteSyntaxError("a cluster needs its hours, e.g. 720h", example)
    if request.gpu is None:
        raise QuoteSyntaxError("a cluster needs a GPU type, e.g. h100", example)
    return request


def _apply_key(request: QuoteRequest, key: str, value: str) -> None:
    if key in {"in", "input", "prompt", "i"}:
        request.input_tokens = parse_tokens(value, "in")
    elif key in {"out", "output", "completion", "o"}:
        request.output_tokens = parse_tokens(value, "out")
    elif key in {"cached", "cache", "cached_in"}:
        request.cached_input_tokens = parse_tokens(value, "cached")
    elif key in {"requests", "reqs", "req", "volume", "calls", "tokens"}:
        volume = parse_volume(value if "/" in value else f"{value}/month", request.days_in_month)
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
            f"unknown setting {quoted(key)}=; use in=, out=, cached=, requests=, rate=, util= or gpu="
        )


def _set_tokens(request: QuoteRequest, input_text: str, output_text: str) -> None:
    if request.input_tokens is not None or request.output_tokens is not None:
        raise QuoteSyntaxError("tokens are given twice; say them once, e.g. 3k/1k or in=3000 out=1000")
    request.input_tokens = parse_tokens(input_text, "input tokens")
    request.output_tokens = parse_tokens(output_text, "output tokens")


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
