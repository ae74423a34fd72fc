"""The capacity model: how many GPUs a model needs, and how fast they serve one request shape.

Pure: it reads only the facts of pricing.facts (models.toml, gpus.toml). Every figure it gives
is an estimate from public facts and a few global efficiency factors; an operator's measured
`[[throughput]]` wins over it (pricing.quote decides which is used).

Facts. Per model (models.toml, from model cards): P total and P_a active parameters, n_L layers,
n_h attention heads, n_kv KV heads of size d (or, for multi-head latent attention, a latent of
r plus a rope part d_r), E routed experts of which k serve each token, an optional window w
on n_w layers, the context length, and the precision together.ai serves it at. Per GPU
(gpus.toml, from data sheets): memory, bandwidth BW, dense BF16 and FP8 throughput F.

    weights     W  = P × b_w      b_w bytes per parameter: FP16/BF16 2, FP8 1, MXFP4 0.53, INT4 0.5
    KV cache    kv = 2 × n_kv × d × b_kv per token and layer   (MLA: (r + d_r) × b_kv)
                b_kv = 1 (an FP8 cache) when the weights are 8-bit or less and the GPU has FP8,
                else 2. A KV head is not split between GPUs, so a group of G holds
                max(n_kv, G) heads' worth (MLA: G copies of the latent); nodes split layers.
    a sequence of L tokens holds  kv_seq(L) = kv × ((n_L − n_w) × L + n_w × min(L, w))

Fit. A group of G GPUs (1, 2, 4 or 8 in a node, then whole nodes of 8, up to 64) can use
    M(G) = G × (memory × MEMORY_USABLE − RESERVED_GB_PER_GPU)
and the group chosen is the smallest G with M(G) ≥ W + C × kv_seq(T_in + T_out), where C is the
concurrency the volume needs (its arrival rate × one request's unloaded time, Little's law),
at most TARGET_CONCURRENCY. If no G qualifies the model fits nowhere on that GPU.

Throughput. At the largest batch memory allows, B = min(⌊(M(G) − W) / kv_seq(T_in + T_out)⌋,
MAX_BATCH), each request costs the group
    compute   t_c = (2 × P_a × (T_in + T_out) + A) / (G × F × η_c)
    memory    t_m = T_out × [(W_step + B × kv_seq(T_in + T_out / 2)) / (G × BW × η_m) + n_L × s] / B
    A = 2 × n_h × (d_k + d_v) × Σ_layers (T_in × min(T_in / 2, w) + T_out × min(T_in + T_out / 2, w))
    W_step = the weights one decode step reads: W, or for MoE the shared part plus the experts
             × (1 − (1 − k/E)^B), the share of experts B tokens route to
so prefill is bound by compute and decode by memory bandwidth (weights once per step, the KV
cache once per sequence, plus a fixed s = STEP_SECONDS_PER_LAYER per layer and step for kernel
launches and all-reduce latency); the two are added, not overlapped. The group serves 1 / (t_c + t_m)
requests a second, T_out times that in output tokens. Time to first token: one prefill of T_in
alone (its compute, one read of the weights, one step's fixed cost), so queueing behind other requests comes on
top. Output speed of a request: T_out / (B × (t_c + t_m)), at full load or at the smallest batch
that carries the quoted volume.

Efficiency factors, global (the same for every model), fitted once, together, to all 114
published figures in tests/data/published_throughput.toml (NVIDIA's TensorRT-LLM table: six of
our models on H100 and H200 at ten request shapes; SGLang serving DeepSeek-R1 on 8 H200s):
    η_c = COMPUTE_EFFICIENCY × η_tp × η_moe     η_m = BANDWIDTH_EFFICIENCY × η_tp × η_moe
    η_tp = TENSOR_PARALLEL_EFFICIENCY ^ log2(GPUs in a node), × MULTI_NODE_EFFICIENCY across nodes
    η_moe = MOE_EFFICIENCY for mixture-of-experts models, else 1
with s fitted alongside them (DeepSeek-R1 at a concurrency of 8 is the low-batch point that
pins it). MULTI_NODE_EFFICIENCY and PCIE_TENSOR_PARALLEL_EFFICIENCY (GPUs without NVLink) are
assumptions, not fitted: no published figure was found to fit them to. MAX_BATCH and
TARGET_CONCURRENCY are planning choices. benchmarks/capacity_accuracy.py prints the estimate
beside every published figure and refits the factors with --fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from pricing.facts import GB, PRECISION_BYTES, GpuFacts, ModelFacts

MEMORY_USABLE = 0.90             # of each GPU's memory; the rest is the engine's and CUDA's
RESERVED_GB_PER_GPU = 4.0        # activations, CUDA graphs, communication buffers
BANDWIDTH_EFFICIENCY = 0.90      # of data-sheet memory bandwidth a decode step achieves
COMPUTE_EFFICIENCY = 0.55        # of dense data-sheet tensor throughput prefill achieves
TENSOR_PARALLEL_EFFICIENCY = 0.95   # per doubling of the group within an NVLink node
PCIE_TENSOR_PARALLEL_EFFICIENCY = 0.8  # assumption: per doubling without NVLink
MULTI_NODE_EFFICIENCY = 0.8      # assumption: a group spanning nodes (pipeline-parallel between them)
MOE_EFFICIENCY = 0.60            # grouped expert matrix multiplies run below dense ones
STEP_SECONDS_PER_LAYER = 30e-6  # fixed cost of a step per layer: kernel launches, all-reduce latency
MAX_BATCH = 4096                 # sequences one engine schedules at once
TARGET_CONCURRENCY = 64          # a group must hold this many sequences (or all the volume needs)
NODE_GPUS = 8
MAX_NODES = 8


@dataclass(frozen=True)
class Estimate:
    """What one group of GPUs does with one request shape, at the largest batch memory allows."""

    gpus: int
    batch: int
    requests_per_second: float
    output_tokens_per_second: float
    tokens_per_second: float           # input and output together
    time_to_first_token: float         # seconds, the request alone
    output_speed: float | None         # tokens/s one request sees at this batch; None without output


@dataclass(frozen=True)
class Sizing:
    """The group a volume needs: its size (None: fits nowhere), why, and its estimate."""

    gpus: int | None
    concurrency: int
    reason: str
    estimate: Estimate | None = None


# -- the model -------------------------------------------------------------------------------

def group_sizes() -> tuple[int, ...]:
    """Tensor-parallel groups tried, smallest first: within a node, then whole nodes."""
    return (1, 2, 4, 8) + tuple(NODE_GPUS * n for n in range(2, MAX_NODES + 1))


def _kv_bytes(model: ModelFacts, gpu: GpuFacts) -> float:
    return 1.0 if PRECISION_BYTES[model.precision] <= 1 and gpu.fp8_tflops else 2.0


def _kv_per_token_layer(model: ModelFacts, gpu: GpuFacts, gpus: int) -> float:
    """KV-cache bytes one token needs in one layer, across a group of `gpus`."""
    if model.is_latent_attention:
        values = (model.kv_lora_rank or 0) + (model.rope_head_dim or 0)
        return values * _kv_bytes(model, gpu) * min(gpus, NODE_GPUS)  # each GPU keeps the whole latent
    heads = max(model.kv_heads or 0, min(gpus, NODE_GPUS))  # nodes split layers, not heads
    return 2 * heads * (model.head_dim or 0) * _kv_bytes(model, gpu)


def _kv_sequence(model: ModelFacts, gpu: GpuFacts, gpus: int, tokens: float) -> float:
    """KV-cache bytes one sequence of `tokens` holds across a group of `gpus`."""
    windowed = min(tokens, model.sliding_window) if model.sliding_window else tokens
    layer_tokens = (model.layers - model.window_layers) * tokens + model.window_layers * windowed
    return _kv_per_token_layer(model, gpu, gpus) * layer_tokens


def _cache_memory(model: ModelFacts, gpu: GpuFacts, gpus: int) -> float:
    """Bytes a group has for the KV cache once the weights are loaded (negative: they do not fit)."""
    usable = gpus * (gpu.memory_gb * MEMORY_USABLE - RESERVED_GB_PER_GPU) * GB
    return usable - model.weight_bytes


def _parallel_efficiency(gpu: GpuFacts, gpus: int) -> float:
    per_doubling = TENSOR_PARALLEL_EFFICIENCY if gpu.interconnect == "nvlink" else PCIE_TENSOR_PARALLEL_EFFICIENCY
    efficiency: float = per_doubling ** math.log2(min(gpus, NODE_GPUS))
    return efficiency * (MULTI_NODE_EFFICIENCY if gpus > NODE_GPUS else 1.0)


def _step_weight_bytes(model: ModelFacts, batch: int) -> float:
    """Weight bytes one decode step of `batch` tokens reads: MoE reads only the experts routed to."""
    if not (model.experts and model.experts_per_token):  # dense (model.is_moe, spelled out for the types)
        return model.weight_bytes
    share = model.experts_per_token / model.experts
    experts = (model.parameters - model.active) / (1 - share)
    shared = model.parameters - experts
    touched = 1 - (1 - share) ** batch
    return (shared + experts * touched) * GB * PRECISION_BYTES[model.precision]


def _attention_flops(model: ModelFacts, input_tokens: int, output_tokens: int) -> float:
    """Attention score and value FLOPs of one request over all layers."""
    if model.is_latent_attention:
        per_position = (model.kv_lora_rank or 0) * 2 + (model.rope_head_dim or 0)  # absorbed MLA: d_k + d_v
    else:
        per_position = 2 * (model.head_dim or 0)
    window = model.sliding_window or math.inf
    mean_context = input_tokens + output_tokens / 2

    def positions(limit: float) -> float:
        return input_tokens * min(input_tokens / 2, limit) + output_tokens * min(mean_context, limit)

    full_layers = model.layers - model.window_layers
    total = full_layers * positions(math.inf) + model.window_layers * positions(window)
    return 2 * model.attention_heads * per_position * total


@lru_cache(maxsize=8192)
def estimate(model: ModelFacts, gpu: GpuFacts, input_tokens: int, output_tokens: int, gpus: int,
             batch: int | None = None) -> Estimate | None:
    """One group of `gpus` serving requests of this shape, at `batch` sequences (default: the
    largest memory allows); None when not even one sequence fits beside the weights."""
    sequence = _kv_sequence(model, gpu, gpus, input_tokens + output_tokens)
    cache = _cache_memory(model, gpu, gpus)
    if cache <= 0 or sequence > cache:
        return None
    largest = min(int(cache // sequence), MAX_BATCH)
    batch = max(1, min(batch or largest, largest))

    efficiency = _parallel_efficiency(gpu, gpus) * (MOE_EFFICIENCY if model.is_moe else 1.0)
    fp8 = PRECISION_BYTES[model.precision] == 1
    peak = gpu.fp8_tflops if fp8 and gpu.fp8_tflops else gpu.bf16_tflops
    flops = gpus * peak * 1e12 * COMPUTE_EFFICIENCY * efficiency
    bandwidth = gpus * gpu.bandwidth_tb_s * 1e12 * BANDWIDTH_EFFICIENCY * efficiency

    attention = _attention_flops(model, input_tokens, output_tokens)
    compute = (2 * model.active * GB * (input_tokens + output_tokens) + attention) / flops
    mean_sequence = _kv_sequence(model, gpu, gpus, input_tokens + output_tokens / 2)
    step_bytes = _step_weight_bytes(model, batch) + batch * mean_sequence
    step_overhead = model.layers * STEP_SECONDS_PER_LAYER
    memory = output_tokens * (step_bytes / bandwidth + step_overhead) / batch
    per_request = compute + memory

    prefill = (2 * model.active * GB * input_tokens + _attention_flops(model, input_tokens, 0)) / flops
    first_token = prefill + _step_weight_bytes(model, 1) / bandwidth + step_overhead
    requests = 1 / per_request
    return Estimate(
        gpus=gpus,
        batch=batch,
        requests_per_second=requests,
        output_tokens_per_second=requests * output_tokens,
        tokens_per_second=requests * (input_tokens + output_tokens),
        time_to_first_token=first_token,
        output_speed=output_tokens / (batch * per_request) if output_tokens else None,
    )


def size(model: ModelFacts, gpu: GpuFacts, input_tokens: int, output_tokens: int,
         requests_per_second: float) -> Sizing:
    """The smallest group that holds the weights and the KV cache of the concurrency needed."""
    tokens = input_tokens + output_tokens
    weights = f"{model.weight_bytes / GB:,.0f} GB of {model.precision_name} weights"
    if tokens > model.context:
        return Sizing(None, 0, f"a request of {tokens:,} tokens is longer than the model's context "
                               f"of {model.context:,}")
    concurrency = 1
    for gpus in group_sizes():
        alone = estimate(model, gpu, input_tokens, output_tokens, gpus, 1)
        if alone is None:
            continue
        needed = math.ceil(requests_per_second / alone.requests_per_second) if requests_per_second > 0 else 1
        concurrency = max(1, min(needed, TARGET_CONCURRENCY))
        cache = _cache_memory(model, gpu, gpus)
        if concurrency * _kv_sequence(model, gpu, gpus, tokens) <= cache:
            reason = (f"memory: {weights} and the KV cache of {concurrency} "
                      f"request{'s' if concurrency != 1 else ''} in flight")
            return Sizing(gpus, concurrency, reason, estimate(model, gpu, input_tokens, output_tokens, gpus))
    return Sizing(None, concurrency, f"{weights} and the KV cache of {concurrency} request"
                                     f"{'s' if concurrency != 1 else ''} in flight need more than "
                                     f"{group_sizes()[-1]} × {gpu.label} hold")


def at_load(model: ModelFacts, gpu: GpuFacts, input_tokens: int, output_tokens: int, gpus: int,
            fraction: float) -> Estimate | None:
    """The group at the smallest batch that serves `fraction` of its full-load throughput: what a
    request sees (its output speed) when the endpoint runs that busy."""
    full = estimate(model, gpu, input_tokens, output_tokens, gpus)
    if full is None:
        return None
    wanted = max(0.0, min(fraction, 1.0)) * full.requests_per_second
    low, high = 1, full.batch
    while low < high:
        middle = (low + high) // 2
        guess = estimate(model, gpu, input_tokens, output_tokens, gpus, middle)
        if guess is not None and guess.requests_per_second >= wanted:
            high = middle
        else:
            low = middle + 1
    return estimate(model, gpu, input_tokens, output_tokens, gpus, low)
