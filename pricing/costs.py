"""Cost formulas: serverless and batch requests, dedicated endpoints, GPU clusters. All Decimal."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from pricing.catalog import HardwareOption, Price

MILLION = Decimal(1_000_000)
DAYS_PER_MONTH = Decimal("30.44")
HOURS_PER_MONTH = DAYS_PER_MONTH * 24
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600


def token_cost(price: Price, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0) -> Decimal:
    """T_in/1e6 × P_in + T_out/1e6 × P_out, cached input at the cached rate where there is one.

    `input_tokens` includes the cached ones, as OpenAI-compatible usage reports them."""
    cached = min(cached_input_tokens, input_tokens) if price.cached_input is not None else 0
    uncached = input_tokens - cached
    total = Decimal(uncached) * price.input + Decimal(output_tokens) * price.output
    if cached:
        total += Decimal(cached) * price.cached_input  # type: ignore[operator]
    return total / MILLION


def blended_rate(price: Price, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0) -> Decimal:
    """USD per 1M tokens for this request shape (input and output together)."""
    tokens = input_tokens + output_tokens
    if tokens == 0:
        return Decimal(0)
    return token_cost(price, input_tokens, output_tokens, cached_input_tokens) * MILLION / tokens


@dataclass(frozen=True)
class DedicatedQuote:
    """What serving a monthly token volume on dedicated GPUs costs."""

    hardware: HardwareOption
    tokens_per_second_per_gpu: Decimal
    throughput_is_estimate: bool
    units: int                      # how many hardware configurations
    gpus: int
    monthly_cost: Decimal
    utilization: Decimal            # 0..1, of the capacity paid for
    effective_per_million: Decimal | None   # None without volume
    break_even_tokens_per_month: Decimal | None  # None: never cheaper than serverless
    full_utilization_per_million: Decimal


def dedicated_quote(
    hardware: HardwareOption,
    tokens_per_second_per_gpu: Decimal,
    tokens_per_month: Decimal,
    serverless_per_million: Decimal,
    *,
    utilization: Decimal | None = None,
    throughput_is_estimate: bool = False,
) -> DedicatedQuote:
    """GPUs needed for the volume (at `utilization` of peak throughput if stated), the monthly
    cost, the effective $/1M at the resulting utilization, and the break-even monthly volume."""
    capacity_per_unit = tokens_per_second_per_gpu * hardware.count * SECONDS_PER_MONTH
    usable_per_unit = capacity_per_unit * (utilization if utilization else Decimal(1))
    units = max(1, int((tokens_per_month / usable_per_unit).to_integral_value(ROUND_CEILING))) if usable_per_unit else 1
    monthly = hardware.hourly * HOURS_PER_MONTH * units
    effective = monthly / tokens_per_month * MILLION if tokens_per_month > 0 else None
    actual_utilization = tokens_per_month / (capacity_per_unit * units) if capacity_per_unit else Decimal(0)
    full_util = hardware.hourly * HOURS_PER_MONTH / capacity_per_unit * MILLION
    break_even = None
    if serverless_per_million > full_util:
        # Volume at which one configuration costs what serverless would; it fits in one unit.
        break_even = hardware.hourly * HOURS_PER_MONTH / serverless_per_million * MILLION
    return DedicatedQuote(
        hardware=hardware,
        tokens_per_second_per_gpu=tokens_per_second_per_gpu,
        throughput_is_estimate=throughput_is_estimate,
        units=units,
        gpus=units * hardware.count,
        monthly_cost=monthly,
        utilization=actual_utilization,
        effective_per_million=effective,
        break_even_tokens_per_month=break_even,
        full_utilization_per_million=full_util,
    )


@dataclass(frozen=True)
class ClusterQuote:
    """A GPU cluster rented by the GPU-hour."""

    gpus: int
    hours: Decimal
    per_gpu_hour: Decimal
    cost: Decimal
    tokens: Decimal | None
    effective_per_million: Decimal | None


def cluster_quote(
    gpus: int, hours: Decimal, per_gpu_hour: Decimal, tokens_per_second: Decimal | None = None
) -> ClusterQuote:
    """$/GPU-hour × GPUs × hours; with a stated cluster throughput, the effective $/1M tokens."""
    cost = per_gpu_hour * gpus * hours
    tokens = tokens_per_second * hours * 3600 if tokens_per_second else None
    effective = cost / tokens * MILLION if tokens else None
    return ClusterQuote(gpus, hours, per_gpu_hour, cost, tokens, effective)
