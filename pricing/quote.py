"""Answering a parsed `/costquote`: per request and per month on serverless, batch and dedicated."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from typing import Any

from pricing import capacity
from pricing.catalog import PRIMARY_PROVIDER, Catalog, HardwareOption, Price, UnknownModel
from pricing.costs import (
    SECONDS_PER_MONTH,
    ClusterQuote,
    DedicatedQuote,
    blended_rate,
    cluster_quote,
    dedicated_quote,
    token_cost,
)
from pricing.grammar import QuoteRequest
from pricing.lexicon import EXAMPLES, QuoteSyntaxError, quoted

MILLION = Decimal(1_000_000)
ESTIMATE_NOTE = ("Dedicated figures are estimates (model-card and data-sheet facts, stated efficiency factors); "
                 "set [[throughput]] in budget-guard.toml with your measured tokens/s and they win.")


@dataclass(frozen=True)
class ModeCost:
    """One deployment mode's cost: per request, and per month when a volume is known."""

    per_request: Decimal
    monthly: Decimal | None


@dataclass(frozen=True)
class Capacity:
    """How a dedicated line was sized: one replica's GPUs, why, its throughput and latency."""

    gpu_label: str
    group_gpus: int
    tokens_per_second: Decimal          # one replica, input and output together
    source: str                         # "estimate" (capacity model), "measured" or "default" ([[throughput]])
    reason: str                         # what set the group size
    output_tokens_per_second: Decimal | None = None
    time_to_first_token: Decimal | None = None   # seconds, on an idle endpoint
    output_speed: Decimal | None = None          # tokens/s one request sees at the quoted load
    output_speed_at_full_load: Decimal | None = None

    @property
    def is_estimate(self) -> bool:
        return self.source == "estimate"


@dataclass(frozen=True)
class ModelQuote:
    """The quote for one model."""

    label: str
    price: Price
    runners_up: tuple[str, ...]
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    requests_per_month: Decimal | None
    tokens_per_month: Decimal | None
    serverless: ModeCost
    batch: ModeCost | None
    dedicated: DedicatedQuote | None
    dedicated_note: str | None
    capacity: Capacity | None = None

    @property
    def batch_saving(self) -> Decimal | None:
        """Monthly (or per-request, without a volume) dollars saved by batch."""
        if self.batch is None:
            return None
        if self.serverless.monthly is not None and self.batch.monthly is not None:
            return self.serverless.monthly - self.batch.monthly
        return self.serverless.per_request - self.batch.per_request

    @property
    def batch_saving_fraction(self) -> Decimal | None:
        if self.batch is None or self.serverless.per_request == 0:
            return None
        return (self.serverless.per_request - self.batch.per_request) / self.serverless.per_request

    @property
    def monthly_cost(self) -> Decimal:
        """Serverless monthly cost, or per-request cost without a volume (for sorting)."""
        return self.serverless.monthly if self.serverless.monthly is not None else self.serverless.per_request

    @property
    def cheapest(self) -> str:
        """The cheapest way to run this workload: serverless, batch or dedicated."""
        options = {"serverless": self.monthly_cost}
        if self.batch is not None:
            options["batch"] = self.batch.monthly if self.batch.monthly is not None else self.batch.per_request
        if self.dedicated is not None and self.serverless.monthly is not None:
            options["dedicated"] = self.dedicated.monthly_cost
        return min(options, key=lambda k: options[k])


@dataclass(frozen=True)
class QuoteResult:
    """Everything a `/costquote` answers with."""

    request: QuoteRequest
    quotes: list[ModelQuote] = field(default_factory=list)
    cluster: ClusterQuote | None = None
    notes: list[str] = field(default_factory=list)


def build_quote(request: QuoteRequest, catalog: Catalog, at: date | None = None, default_gpu: str = "h100") -> QuoteResult:
    """Price a parsed request against the catalog; raises QuoteSyntaxError for unknown models or GPUs."""
    if request.kind == "cluster":
        return _cluster(request, catalog)
    prices: list[tuple[str, Price, tuple[str, ...]]] = []
    if request.rate is not None:
        rate_in, rate_out = request.rate
        prices.append(("custom rate", Price("custom", "custom rate", rate_in, rate_out, source="request"), ()))
    for name in request.models:
        try:
            match = catalog.resolve(name)
        except UnknownModel as exc:
            hint = f"; did you mean {', '.join(exc.suggestions)}?" if exc.suggestions else ""
            raise QuoteSyntaxError(
                f"no model called {quoted(name, 60)}{hint}",
                " ".join(f"{exc.suggestions[0]} 3k/1k x 2M/mo".split()) if exc.suggestions else EXAMPLES[0],
            ) from None
        price = catalog.price(match.provider, match.model, at)
        if price is None:
            raise QuoteSyntaxError(f"'{match.model}' has no price in effect on {at or 'today'}", EXAMPLES[0])
        label = match.model if match.provider == "together" else f"{match.provider}/{match.model}"
        if label in (q[0] for q in prices):
            continue
        prices.append((label, price, match.runners_up))

    gpu = (request.gpu or default_gpu).lower()
    if request.dedicated and gpu not in catalog.hardware:
        raise QuoteSyntaxError(
            f"no dedicated hardware called {quoted(gpu, 20)}; known: {', '.join(sorted(catalog.hardware))}",
            EXAMPLES[4],
        )
    quotes = [_model_quote(request, catalog, label, price, runners_up, gpu) for label, price, runners_up in prices]
    if request.kind == "compare":
        quotes.sort(key=lambda q: (q.monthly_cost, q.label))
    notes: list[str] = []
    at_input_rate = [q.label for q in quotes if q.cached_input_tokens and q.price.cached_input is None]
    if at_input_rate:
        notes.append(f"{', '.join(at_input_rate)} {'has' if len(at_input_rate) == 1 else 'have'} no cached-input rate: "
                     "the cached tokens are charged at the input rate.")
    if any(q.capacity and q.capacity.source != "measured" for q in quotes if q.dedicated):
        notes.append(ESTIMATE_NOTE)
    return QuoteResult(request=request, quotes=quotes, notes=notes)


def _model_quote(
    request: QuoteRequest, catalog: Catalog, label: str, price: Price, runners_up: tuple[str, ...], gpu: str
) -> ModelQuote:
    tokens_in, tokens_out, cached = request.input_tokens or 0, request.output_tokens or 0, request.cached_input_tokens
    per_request = token_cost(price, tokens_in, tokens_out, cached)
    requests_per_month = tokens_per_month = None
    if request.volume is not None:
        per_request_tokens = Decimal(tokens_in + tokens_out)
        if request.volume.unit == "tokens":
            tokens_per_month = request.volume.amount
            requests_per_month = tokens_per_month / per_request_tokens
        else:
            requests_per_month = request.volume.amount
            tokens_per_month = requests_per_month * per_request_tokens
    monthly = per_request * requests_per_month if requests_per_month is not None else None
    serverless = ModeCost(per_request, monthly)

    batch_price = price.batch()
    batch = None
    if batch_price is not None:
        batch_per_request = token_cost(batch_price, tokens_in, tokens_out, cached)
        batch = ModeCost(batch_per_request, batch_per_request * requests_per_month if requests_per_month is not None else None)

    dedicated = sized = None
    note = None
    if tokens_per_month and requests_per_month is not None:
        sized, note = _capacity(catalog, label, price, gpu, tokens_in, tokens_out,
                                requests_per_month / SECONDS_PER_MONTH / (request.utilization or 1))
        if sized is not None:
            dedicated = dedicated_quote(
                _hardware(catalog, gpu),
                sized.group_gpus,
                sized.tokens_per_second,
                tokens_per_month,
                blended_rate(price, tokens_in, tokens_out, cached),
                batch_per_million=blended_rate(batch_price, tokens_in, tokens_out, cached) if batch_price else None,
                utilization=request.utilization,
            )
            sized = _at_load(catalog, price, gpu, tokens_in, tokens_out, sized, dedicated.utilization)
    return ModelQuote(
        label=label,
        price=price,
        runners_up=runners_up,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        cached_input_tokens=cached,
        requests_per_month=requests_per_month,
        tokens_per_month=tokens_per_month,
        serverless=serverless,
        batch=batch,
        dedicated=dedicated,
        dedicated_note=note,
        capacity=sized,
    )


def _hardware(catalog: Catalog, gpu: str) -> HardwareOption:
    return catalog.hardware[gpu] if gpu in catalog.hardware else next(iter(catalog.hardware.values()))


def _capacity(catalog: Catalog, label: str, price: Price, gpu: str, tokens_in: int, tokens_out: int,
              requests_per_second: Decimal) -> tuple[Capacity | None, str | None]:
    """One replica's size and throughput for this model on `gpu`, or why there is none.

    The operator's measured `[[throughput]]` for the model wins over the capacity model's
    estimate; their `default` stands in only for models the capacity model cannot estimate."""
    hardware = _hardware(catalog, gpu)
    facts = catalog.model_facts.get(price.model) if price.provider == PRIMARY_PROVIDER else None
    gpu_facts = catalog.gpu(hardware.gpu)
    gpu_label = gpu_facts.label if gpu_facts else (hardware.label or hardware.gpu.upper())
    measured = catalog.throughput.get((price.model, hardware.gpu))
    default = catalog.throughput.get(("default", hardware.gpu))
    if facts is None or gpu_facts is None:
        per_gpu, source = (measured, "measured") if measured is not None else (default, "default")
        if per_gpu is None:
            return None, _no_estimate(label, price, hardware.gpu, facts is None)
        what = "architecture facts" if facts is None else f"data-sheet facts for {hardware.gpu}"
        return Capacity(gpu_label, hardware.count, per_gpu * hardware.count, source,
                        f"memory fit not checked: no {what}"), None
    if tokens_in + tokens_out > facts.context:
        return None, (f"no estimate for {label}: a request of {tokens_in + tokens_out:,} tokens is longer than "
                      f"its context of {facts.context:,}")
    sizing = capacity.size(facts, gpu_facts, tokens_in, tokens_out, float(requests_per_second))
    if sizing.gpus is None or sizing.estimate is None:
        return None, f"{label} fits nowhere on {gpu_facts.label}: {sizing.reason}"
    estimate = sizing.estimate
    if measured is not None:
        tokens_per_second, source = measured * sizing.gpus, "measured"
        output = tokens_per_second * tokens_out / (tokens_in + tokens_out)
    else:
        tokens_per_second, source = _figure(estimate.tokens_per_second), "estimate"
        output = _figure(estimate.output_tokens_per_second)
    return Capacity(
        gpu_label=gpu_label,
        group_gpus=sizing.gpus,
        tokens_per_second=tokens_per_second,
        source=source,
        reason=sizing.reason,
        output_tokens_per_second=output,
        time_to_first_token=_figure(estimate.time_to_first_token, 2),
        output_speed_at_full_load=_figure(estimate.output_speed, 2) if estimate.output_speed is not None else None,
    ), None


def _at_load(catalog: Catalog, price: Price, gpu: str, tokens_in: int, tokens_out: int, sizing: Capacity,
             utilization: Decimal) -> Capacity:
    """The output speed a request sees when each replica runs at `utilization` of its capacity."""
    hardware = _hardware(catalog, gpu)
    facts, gpu_facts = catalog.model_facts.get(price.model), catalog.gpu(hardware.gpu)
    if sizing.output_speed_at_full_load is None or facts is None or gpu_facts is None:
        return sizing
    loaded = capacity.at_load(facts, gpu_facts, tokens_in, tokens_out, sizing.group_gpus, float(utilization))
    if loaded is None or loaded.output_speed is None:
        return sizing
    return replace(sizing, output_speed=_figure(loaded.output_speed, 2))


def _no_estimate(label: str, price: Price, gpu: str, no_facts: bool) -> str:
    if price.source == "request":
        return "a custom rate names no model, so there is nothing to size GPUs from"
    if no_facts:
        return (f"no estimate for {label}: its architecture (parameters, layers, KV heads) is not in "
                f"our model facts; add it as [[model_facts]] in budget-guard.toml, or set your measured "
                f"[[throughput]] for {gpu}")
    return f"no estimate on {gpu}: we have no data-sheet facts for that GPU; set your measured [[throughput]] for it"


def _figure(value: float, digits: int = 3) -> Decimal:
    """An estimate as a Decimal to `digits` significant figures, written out plainly."""
    return Decimal(format(Decimal(f"{value:.{digits}g}"), "f"))


def _cluster(request: QuoteRequest, catalog: Catalog) -> QuoteResult:
    gpu = (request.gpu or "").lower()
    if gpu not in catalog.hardware:
        raise QuoteSyntaxError(
            f"no GPU type called {quoted(gpu, 20)}; known: {', '.join(sorted(catalog.hardware))}", EXAMPLES[6]
        )
    option = catalog.hardware[gpu]
    per_gpu_hour = option.hourly / option.count
    cluster = cluster_quote(request.cluster_gpus or 1, request.cluster_hours or Decimal(0), per_gpu_hour,
                            request.cluster_throughput)
    return QuoteResult(request=request, cluster=cluster)


def quote_json(result: QuoteResult) -> dict[str, Any] | list[dict[str, Any]]:
    """Exact amounts as decimal strings: one object per model (a list when comparing)."""
    if result.cluster is not None:
        c = result.cluster
        return {
            "kind": "cluster",
            "gpus": c.gpus,
            "hours": str(c.hours),
            "per_gpu_hour": str(c.per_gpu_hour),
            "cost": str(c.cost),
            "tokens": _s(c.tokens),
            "effective_per_million": _s(c.effective_per_million),
        }
    objects = [_model_json(q) for q in result.quotes]
    return objects if result.request.kind == "compare" else objects[0]


def _model_json(q: ModelQuote) -> dict[str, Any]:
    data: dict[str, Any] = {
        "model": q.price.model,
        "provider": q.price.provider,
        "price_source": q.price.source,
        "rates_per_million": {
            "input": str(q.price.input),
            "output": str(q.price.output),
            "cached_input": _s(q.price.cached_input),
        },
        "input_tokens": q.input_tokens,
        "output_tokens": q.output_tokens,
        "cached_input_tokens": q.cached_input_tokens,
        "requests_per_month": _s(q.requests_per_month),
        "tokens_per_month": _s(q.tokens_per_month),
        "per_request": {"serverless": str(q.serverless.per_request), "batch": _s(q.batch.per_request if q.batch else None)},
        "monthly": {"serverless": _s(q.serverless.monthly), "batch": _s(q.batch.monthly if q.batch else None)},
        "batch_served": q.batch is not None,
        "batch_saving": _s(q.batch_saving),
        "cheapest": q.cheapest,
        "runners_up": list(q.runners_up),
    }
    if q.dedicated is not None and q.capacity is not None:
        d, c = q.dedicated, q.capacity
        data["dedicated"] = {
            "gpu": d.hardware.gpu,
            "gpus": d.gpus,
            "gpus_per_replica": d.group_gpus,
            "replicas": d.replicas,
            "set_by": d.set_by,
            "sized_by": c.reason,
            "monthly": str(d.monthly_cost),
            "utilization": str(d.utilization),
            "effective_per_million": _s(d.effective_per_million),
            "break_even_tokens_per_month": _s(d.break_even_tokens_per_month),
            "break_even_vs_batch_tokens_per_month": _s(d.batch_break_even_tokens_per_month),
            "tokens_per_second_per_replica": str(c.tokens_per_second),
            "tokens_per_second_per_gpu": str(d.tokens_per_second_per_gpu),
            "output_tokens_per_second_per_replica": _s(c.output_tokens_per_second),
            "time_to_first_token_seconds": _s(c.time_to_first_token),
            "output_tokens_per_second_per_request": _s(c.output_speed),
            "output_tokens_per_second_per_request_at_full_load": _s(c.output_speed_at_full_load),
            "throughput_source": c.source,
            "throughput_is_estimate": c.source != "measured",
        }
    data["dedicated_note"] = q.dedicated_note
    return data


def _s(value: Decimal | None) -> str | None:
    return None if value is None else str(value)
