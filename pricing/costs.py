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
    if cached and price.cached_input is not None:
        total += Decimal(cached) * price.cached_input
    return total / MILLION


def blended_rate(price: Price, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0) -> Decimal:
    """USD per 1M tokens for this request shape (input and output together)."""
    tokens = input_tokens + output_tokens
    if tokens == 0:
        return Decimal(0)
    return token_cost(price, input_tokens, output_tokens, cached_input_tokens) * MILLION / tokens


@dataclass(frozen=True)
class DedicatedQuote:
    """What serving a monthly token volume on dedicated GPUs costs: replicas of a group of GPUs."""

    hardware: HardwareOption
    group_gpus: int                 # GPUs one replica needs (its tensor-parallel group)
    group_tokens_per_second: Decimal  # input and output tokens one replica serves
    replicas: int
    gpus: int                       # GPUs rented: whole hardware configurations
    monthly_cost: Decimal
    utilization: Decimal            # 0..1, of the capacity paid for
    effective_per_million: Decimal | None   # None without volume
    break_even_tokens_per_month: Decimal | None  # vs serverless; None: never cheaper
    batch_break_even_tokens_per_month: Decimal | None  # vs batch; None: never cheaper (or no batch)
    full_utilization_per_million: Decimal

    @property
    def set_by(self) -> str:
        """`memory` when one replica (the group the model needs) serves the volume, else `throughput`."""
        return "memory" if self.replicas == 1 else "throughput"

    @property
    def tokens_per_second_per_gpu(self) -> Decimal:
        return self.group_tokens_per_second / self.group_gpus


def dedicated_quote(
    hardware: HardwareOption,
    group_gpus: int,
    group_tokens_per_second: Decimal,
    tokens_per_month: Decimal,
    serverless_per_million: Decimal,
    *,
    batch_per_million: Decimal | None = None,
    utilization: Decimal | None = None,
) -> DedicatedQuote:
    """Replicas of `group_gpus` GPUs needed for the volume (each run at `utilization` of its peak
    throughput if stated), the monthly cost of the hardware configurations they take, the effective
    $/1M at the resulting utilization, and the monthly volumes where one replica costs what
    serverless (and batch) would."""
    capacity_per_replica = group_tokens_per_second * SECONDS_PER_MONTH
    usable_per_replica = capacity_per_replica * (utilization if utilization else Decimal(1))
    replicas = 1
    if usable_per_replica > 0:
        replicas = max(1, int((tokens_per_month / usable_per_replica).to_integral_value(ROUND_CEILING)))
    configurations = _configurations(replicas * group_gpus, hardware.count)
    monthly = hardware.hourly * HOURS_PER_MONTH * configurations
    effective = monthly / tokens_per_month * MILLION if tokens_per_month > 0 else None
    actual_utilization = tokens_per_month / (capacity_per_replica * replicas) if capacity_per_replica else Decimal(0)
    one_replica = hardware.hourly * HOURS_PER_MONTH * _configurations(group_gpus, hardware.count)
    full_util = one_replica / capacity_per_replica * MILLION if capacity_per_replica else Decimal(0)

    def break_even(rate: Decimal | None) -> Decimal | None:
        # The volume at which one replica costs what the per-token rate would; it fits in that replica.
        return one_replica / rate * MILLION if rate and capacity_per_replica and rate > full_util else None

    return DedicatedQuote(
        hardware=hardware,
        group_gpus=group_gpus,
        group_tokens_per_second=group_tokens_per_second,
        replicas=replicas,
        gpus=configurations * hardware.count,
        monthly_cost=monthly,
        utilization=actual_utilization,
        effective_per_million=effective,
        break_even_tokens_per_month=break_even(serverless_per_million),
        batch_break_even_tokens_per_month=break_even(batch_per_million),
        full_utilization_per_million=full_util,
    )


def _configurations(gpus: int, per_configuration: int) -> int:
    return max(1, -(-gpus // per_configuration))


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
