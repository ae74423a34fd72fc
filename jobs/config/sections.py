"""The sections of the configuration (`budget-guard.toml`): negotiated prices, aliases, hardware
and cluster rates, throughput and model facts, pulled sources and their field maps, budgets, the
prepaid balance, the OTLP attribute mapping and offline work. Each is a strict, frozen model
whose validators say in one line what is wrong; `jobs.config.settings` holds them together.
"""

from __future__ import annotations

import os
import re
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pricing.grammar import MAX_RATE


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PriceOverride(_Strict):
    """A negotiated or corrected price; wins over the catalog from `start` on."""

    model: str
    input: Decimal = Field(ge=0, le=MAX_RATE)
    output: Decimal = Field(ge=0, le=MAX_RATE)
    cached_input: Decimal | None = Field(default=None, ge=0, le=MAX_RATE)
    batch_discount: Decimal | None = Field(default=None, ge=0, le=100)
    batch: bool = True
    start: date | None = None


class Alias(_Strict):
    """Another name for a catalog model: usage, quotes and budgets that say `name` mean `model`."""

    name: str = Field(min_length=1, max_length=200)
    model: str = Field(min_length=1, max_length=200)


class Hardware(_Strict):
    """A dedicated GPU configuration: type, count and its hourly price."""

    gpu: str
    count: int = Field(default=1, ge=1, le=100_000)
    hourly: Decimal = Field(gt=0, le=10**6)


class ClusterRate(_Strict):
    """What one GPU of a together.ai GPU cluster costs an hour (`gpu_type` as the API names it)."""

    gpu_type: str = Field(min_length=1, max_length=64)
    hourly: Decimal = Field(gt=0, le=Decimal(10_000))


class Throughput(_Strict):
    """Tokens per second one GPU of `gpu` serves for `model`."""

    model: str
    gpu: str
    tokens_per_second: Decimal = Field(gt=0, le=10**9)


class ModelFactsOverride(_Strict):
    """Facts about a model for the capacity model (parameters in billions): the fields given win
    over ours; a model we have no facts for needs them all."""

    model: str = Field(min_length=1, max_length=200)
    parameters: float | None = Field(default=None, gt=0, lt=100_000)
    active_parameters: float | None = Field(default=None, gt=0, lt=100_000)
    layers: int | None = Field(default=None, ge=1, le=10_000)
    attention_heads: int | None = Field(default=None, ge=1, le=10_000)
    kv_heads: int | None = Field(default=None, ge=1, le=10_000)
    head_dim: int | None = Field(default=None, ge=1, le=100_000)
    kv_lora_rank: int | None = Field(default=None, ge=1, le=100_000)
    rope_head_dim: int | None = Field(default=None, ge=1, le=100_000)
    experts: int | None = Field(default=None, ge=1, le=100_000)
    experts_per_token: int | None = Field(default=None, ge=1, le=100_000)
    sliding_window: int | None = Field(default=None, ge=1, le=1_000_000_000)
    window_layers: int | None = Field(default=None, ge=0, le=10_000)
    context: int | None = Field(default=None, ge=1, le=1_000_000_000)
    precision: Literal["fp16", "bf16", "fp8", "int8", "mxfp4", "int4"] | None = None

    def facts(self) -> dict[str, Any]:
        return self.model_dump(exclude={"model"}, exclude_none=True)


class FieldMap(_Strict):
    """Where a generic JSON endpoint keeps each field (dotted paths)."""

    records: str = "data"
    time: str = "timestamp"
    model: str = "model"
    input_tokens: str = "input_tokens"
    output_tokens: str = "output_tokens"
    cached_input_tokens: str | None = None
    requests: str | None = None
    mode: str | None = None
    project: str | None = None
    feature: str | None = None
    api_key: str | None = None
    environment: str | None = None
    event_id: str | None = None


class Source(_Strict):
    """A usage source pulled on a schedule."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    kind: Literal[
        "openai_usage", "generic_json", "together_endpoints",
        "together_batches", "together_fine_tunes", "together_clusters",
    ]
    base_url: str
    api_key_env: str | None = None
    bucket_width: Literal["1h", "1d"] = "1h"
    overlap_hours: int = Field(default=48, ge=0, le=24 * 31)
    start: date | None = None
    fields: FieldMap = FieldMap()
    timeout_seconds: float = Field(default=20.0, gt=0, le=300)

    def api_key(self) -> str | None:
        """The source's key, read from the environment variable it names."""
        return os.environ.get(self.api_key_env) if self.api_key_env else None


SCOPE_KEYS = ("model", "project", "feature", "tag", "mode")
MODES = ("serverless", "batch", "dedicated", "cluster", "training")
"""Ledger modes: token usage (serverless, batch), uptime (dedicated endpoints, GPU clusters), fine-tuning jobs."""
CHANNEL_ID_RE = re.compile(r"^[CGD][A-Z0-9]+$")
MENTION_RE = re.compile(r"^<(?:@[UW][A-Z0-9]+(?:\|[^>]*)?|!subteam\^S[A-Z0-9]+(?:\|[^>]*)?|!here|!channel)>$")


CHANNEL_ID_PROBLEM = "is not a channel ID; give the ID, like C0123ABC (in Slack: the channel's name > About)"


def _matching(value: str | None, pattern: re.Pattern[str], problem: str) -> str | None:
    if value is not None and not pattern.match(value):
        raise ValueError(f"{value[:40]!r} {problem}")
    return value


def channel_id(value: str | None) -> str | None:
    """`value` if it is a Slack channel ID (or None), else ValueError saying how to find one."""
    return _matching(value, CHANNEL_ID_RE, CHANNEL_ID_PROBLEM)


ON_EXCEED = ("alert", "stop-endpoints")


class BudgetConfig(_Strict):
    """A monthly budget as written in `budget-guard.toml`."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    amount: Decimal = Field(gt=0, le=Decimal("1e12"))
    scope: dict[str, str] = {}
    thresholds: list[int] = [50, 80, 100]
    forecast: bool = True
    channel: str | None = None
    mention: str | None = None
    on_exceed: Literal["alert", "stop-endpoints"] = "alert"  # stop-endpoints: at 100% stop those in scope

    @field_validator("scope")
    @classmethod
    def _known_scope_keys(cls, scope: dict[str, str]) -> dict[str, str]:
        unknown = set(scope) - set(SCOPE_KEYS)
        if unknown:
            raise ValueError(f"unknown scope key {sorted(unknown)[0]!r}; use model, project, feature, tag or mode")
        if "mode" in scope and scope["mode"] not in MODES:
            raise ValueError(f"scope mode {scope['mode'][:30]!r} is not one of {', '.join(MODES)}")
        for key, value in scope.items():
            if not value.strip() or len(value) > 200:
                raise ValueError(f"scope {key} must be 1 to 200 characters")
        return scope

    @field_validator("channel")
    @classmethod
    def _channel_id(cls, channel: str | None) -> str | None:
        return channel_id(channel)

    @field_validator("mention")
    @classmethod
    def _mention(cls, mention: str | None) -> str | None:
        return _matching(mention, MENTION_RE, "is not a mention; use <@U0123ABC> for a user, "
                                              "<!subteam^S0123ABC> for a user group, or <!here>")

    @field_validator("thresholds")
    @classmethod
    def _sane_thresholds(cls, thresholds: list[int]) -> list[int]:
        if not thresholds or any(t <= 0 or t > 1000 for t in thresholds):
            raise ValueError("thresholds are percentages between 1 and 1000")
        return sorted(set(thresholds))


MAX_PREPAID = Decimal(100_000_000)  # a prepaid balance or top-up above this is a typo, not a balance


def _prepaid_amount(value: Decimal, what: str) -> Decimal:
    if value != value.quantize(Decimal("0.01")):
        raise ValueError(f"{what} is dollars and cents, like 500 or 1250.50")
    if value > MAX_PREPAID:
        raise ValueError(f"{what} over ${MAX_PREPAID:,} is implausible for a prepaid balance; check the number")
    return value


class Topup(_Strict):
    """A top-up of the prepaid balance, counted from the start of `on` (a local day in TZ)."""

    amount: Decimal = Field(gt=0)
    on: date

    @field_validator("amount")
    @classmethod
    def _plausible(cls, value: Decimal) -> Decimal:
        return _prepaid_amount(value, "a top-up")


class Prepaid(_Strict):
    """The prepaid balance (USD) at the start of `since` (a local day in TZ), and top-ups since."""

    balance: Decimal = Field(ge=0)
    since: date
    topups: list[Topup] = []

    @field_validator("balance")
    @classmethod
    def _plausible(cls, value: Decimal) -> Decimal:
        return _prepaid_amount(value, "the balance")

    @model_validator(mode="after")
    def _topups_after_since(self) -> "Prepaid":
        for topup in self.topups:
            if topup.on < self.since:
                raise ValueError(f"the top-up on {topup.on} is before since = {self.since}; "
                                 "fold it into balance or move since back")
        return self


class OtlpMapping(_Strict):
    """Where `POST /v1/traces` finds a span's project, feature, environment and API key: attribute
    names tried in order, each on the span first and then on its resource; the first present wins.
    With no project found, the span is filed under the ingest token's project."""

    project: list[str] = ["service.name"]
    feature: list[str] = []
    environment: list[str] = ["deployment.environment.name", "deployment.environment", "gen_ai.environment"]
    api_key: list[str] = []


class Offline(_Strict):
    """Dimensions the operator knows to be offline work (batch candidates)."""

    features: list[str] = []
    projects: list[str] = []
    api_keys: list[str] = []
