"""Model and GPU facts for the capacity model: the dataclasses, their checks, and our tables.

Model facts come from model cards (data/models.toml, with the precision together.ai serves each
model at), laid under any operator `[[model_facts]]`; GPU facts come from data sheets
(data/gpus.toml), reachable by every name together.ai or our tables use. Pure: reads those two
files and nothing else of ours."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data"
GB = 1e9

PRECISION_BYTES = {"fp16": 2.0, "bf16": 2.0, "fp8": 1.0, "int8": 1.0, "mxfp4": 0.53125, "int4": 0.5}
PRECISION_NAMES = {"fp16": "FP16", "bf16": "BF16", "fp8": "FP8", "int8": "INT8", "mxfp4": "MXFP4", "int4": "INT4"}


class FactsError(ValueError):
    """Model facts that are missing or make no sense; the message names the field."""


@dataclass(frozen=True)
class ModelFacts:
    """What the capacity model needs to know about a model (parameters in billions)."""

    model: str
    parameters: float
    layers: int
    attention_heads: int
    context: int
    precision: str
    active_parameters: float | None = None
    kv_heads: int | None = None
    head_dim: int | None = None
    kv_lora_rank: int | None = None
    rope_head_dim: int | None = None
    experts: int | None = None
    experts_per_token: int | None = None
    sliding_window: int | None = None
    window_layers: int = 0
    source: str = ""

    @property
    def is_moe(self) -> bool:
        return bool(self.experts and self.experts_per_token)

    @property
    def is_latent_attention(self) -> bool:
        return self.kv_lora_rank is not None

    @property
    def active(self) -> float:
        return self.active_parameters if self.active_parameters is not None else self.parameters

    @property
    def weight_bytes(self) -> float:
        return self.parameters * GB * PRECISION_BYTES[self.precision]

    @property
    def precision_name(self) -> str:
        return PRECISION_NAMES[self.precision]


@dataclass(frozen=True)
class GpuFacts:
    """A GPU per its data sheet: memory (GB), bandwidth (TB/s), dense TFLOPS."""

    key: str
    label: str
    memory_gb: float
    bandwidth_tb_s: float
    bf16_tflops: float
    fp8_tflops: float | None = None
    interconnect: str = "nvlink"
    source: str = ""


_INT_FIELDS = {"layers", "attention_heads", "context", "kv_heads", "head_dim", "kv_lora_rank", "rope_head_dim",
               "experts", "experts_per_token", "sliding_window", "window_layers"}
_FLOAT_FIELDS = {"parameters", "active_parameters"}
FACT_FIELDS = tuple(f.name for f in fields(ModelFacts) if f.name not in {"model", "source"})


def model_facts(model: str, values: Mapping[str, Any]) -> ModelFacts:
    """Build and check one model's facts; raises FactsError naming what is missing or wrong."""
    unknown = set(values) - set(FACT_FIELDS) - {"source"}
    if unknown:
        raise FactsError(f"{model}: unknown fact {sorted(unknown)[0]!r}")
    missing = [name for name in ("parameters", "layers", "attention_heads", "context", "precision")
               if values.get(name) is None]
    latent = values.get("kv_lora_rank") is not None or values.get("rope_head_dim") is not None
    if latent and (values.get("kv_lora_rank") is None or values.get("rope_head_dim") is None):
        missing.append("kv_lora_rank and rope_head_dim")
    if not latent and (values.get("kv_heads") is None or values.get("head_dim") is None):
        missing.append("kv_heads and head_dim (or kv_lora_rank and rope_head_dim)")
    if missing:
        raise FactsError(f"{model}: needs {', '.join(missing)}")
    cleaned: dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            continue
        if name in _INT_FIELDS:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise FactsError(f"{model}: {name} must be a whole number, not {value!r}")
        elif name in _FLOAT_FIELDS:
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e5:
                raise FactsError(f"{model}: {name} is billions of parameters, more than 0, not {value!r}")
            value = float(value)
        cleaned[name] = value
    facts = ModelFacts(model=model, **cleaned)
    if facts.precision not in PRECISION_BYTES:
        raise FactsError(f"{model}: precision must be one of {', '.join(PRECISION_BYTES)}, not {facts.precision!r}")
    for name in ("layers", "attention_heads", "context"):
        if getattr(facts, name) < 1:
            raise FactsError(f"{model}: {name} must be at least 1")
    if facts.active > facts.parameters:
        raise FactsError(f"{model}: active_parameters cannot exceed parameters")
    experts, per_token = facts.experts or 0, facts.experts_per_token or 0
    if bool(experts) != bool(per_token) or per_token > experts:
        raise FactsError(f"{model}: give experts and experts_per_token together, at most one per expert")
    if facts.window_layers > facts.layers or (facts.window_layers and not facts.sliding_window):
        raise FactsError(f"{model}: window_layers needs sliding_window and at most `layers` layers")
    return facts


@lru_cache(maxsize=1)
def _model_table() -> dict[str, dict[str, Any]]:
    """Our models.toml as catalog model → its facts (architecture merged in, with sources)."""
    data = tomllib.loads((DATA / "models.toml").read_text(encoding="utf-8"))
    table: dict[str, dict[str, Any]] = {}
    for entry in data.get("models", []):
        architecture = dict(data["architectures"][entry["architecture"]])
        card = architecture.pop("source", "")
        architecture["precision"] = entry["precision"]
        architecture["source"] = f"{card}; precision: {entry.get('source', '')}"
        table[entry["model"]] = architecture
    return table


def load_model_facts(overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, ModelFacts]:
    """Our facts per catalog model, each operator override laid over them (or standing alone)."""
    merged = {model: dict(values) for model, values in _model_table().items()}
    for model, values in (overrides or {}).items():
        given = {k: v for k, v in values.items() if v is not None}
        base = merged.get(model, {})
        merged[model] = {**base, **given, "source": "budget-guard.toml" + (" over " + base["source"] if base else "")}
    return {model: model_facts(model, values) for model, values in merged.items()}


@lru_cache(maxsize=1)
def load_gpu_facts() -> dict[str, GpuFacts]:
    """Data-sheet facts per GPU, reachable by every name together.ai or our tables use for it."""
    data = tomllib.loads((DATA / "gpus.toml").read_text(encoding="utf-8"))
    table: dict[str, GpuFacts] = {}
    for entry in data.get("gpu", []):
        names = entry.get("names", [])
        gpu = GpuFacts(**{k: v for k, v in entry.items() if k != "names"})
        for name in {gpu.key, *names}:
            table[name.lower()] = gpu
    return table


def gpu_facts(name: str) -> GpuFacts | None:
    """The GPU called `name` (`h100`, `H100_SXM`, `1x_nvidia_h100_80gb_sxm`), if we know it."""
    key = name.strip().lower()
    table = load_gpu_facts()
    if key in table:
        return table[key]
    # together.ai hardware ids: `2x_nvidia_h100_80gb_sxm` names the GPU after the count.
    head, _, rest = key.partition("x_")
    return table.get(rest) if head.isdigit() else None


def with_precision(model: ModelFacts, precision: str) -> ModelFacts:
    """The same model served at another precision (e.g. a published benchmark's)."""
    if precision not in PRECISION_BYTES:
        raise FactsError(f"precision must be one of {', '.join(PRECISION_BYTES)}, not {precision!r}")
    return replace(model, precision=precision)
