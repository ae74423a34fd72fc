"""The capacity model beside every published throughput figure in tests/data/published_throughput.toml:
a markdown table (published, ours, ratio) and the worst factor. With --fit, the grid search that
chose the global efficiency factors, run again over all the figures at once.

    python benchmarks/capacity_accuracy.py [--fit]
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pricing import capacity  # noqa: E402
from pricing.facts import gpu_facts, load_model_facts, with_precision  # noqa: E402

PUBLISHED = REPO / "tests" / "data" / "published_throughput.toml"
GRID = {
    "BANDWIDTH_EFFICIENCY": (0.8, 0.85, 0.9, 0.95),
    "COMPUTE_EFFICIENCY": (0.5, 0.55, 0.6, 0.65),
    "TENSOR_PARALLEL_EFFICIENCY": (0.9, 0.925, 0.95),
    "MOE_EFFICIENCY": (0.55, 0.6, 0.65, 0.7),
    "STEP_SECONDS_PER_LAYER": (0.0, 20e-6, 30e-6, 40e-6),
}


def measurements() -> list[dict]:
    return tomllib.loads(PUBLISHED.read_text(encoding="utf-8"))["measurement"]


def ours(m: dict) -> float:
    facts = with_precision(load_model_facts()[m["model"]], m["precision"])
    gpu = gpu_facts(m["gpu"])
    assert gpu is not None, m["gpu"]
    result = capacity.estimate(facts, gpu, m["input_tokens"], m["output_tokens"], m["gpus"], m.get("concurrency"))
    assert result is not None, m
    return result.output_tokens_per_second


def worst_factor(rows: list[dict]) -> float:
    capacity.estimate.cache_clear()
    return max(max(r, 1 / r) for r in (ours(m) / m["output_tokens_per_second"] for m in rows))


def fit(rows: list[dict]) -> None:
    best: tuple[float, dict[str, float]] | None = None
    for values in itertools.product(*GRID.values()):
        for name, value in zip(GRID, values):
            setattr(capacity, name, value)
        worst = worst_factor(rows)
        if best is None or worst < best[0]:
            best = (worst, dict(zip(GRID, values)))
    assert best is not None
    print(f"best worst-case factor over {len(rows)} figures: {best[0]:.3f}")
    for name, value in best[1].items():
        print(f"  {name} = {value:g}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fit", action="store_true", help="rerun the grid search over the global factors")
    args = parser.parse_args()
    rows = measurements()
    if args.fit:
        fit(rows)
        return
    print("| model | GPUs | in/out | concurrency | published out tok/s | ours | ours ÷ published | source |")
    print("|---|---|---|---|---:|---:|---:|---|")
    ratios = []
    for m in rows:
        estimate = ours(m)
        ratio = estimate / m["output_tokens_per_second"]
        ratios.append(ratio)
        source = "TensorRT-LLM perf overview" if "TensorRT-LLM" in m["source"] else m["source"]
        print(f"| {m['published_as']} | {m['gpus']}× {m['gpu'].upper()} {m['precision'].upper()} | "
              f"{m['input_tokens']}/{m['output_tokens']} | {m.get('concurrency', 'max')} | "
              f"{m['output_tokens_per_second']:,.0f} | {estimate:,.0f} | {ratio:.2f} | {source} |")
    worst = max(max(r, 1 / r) for r in ratios)
    geomean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    print(f"\n{len(ratios)} figures; ours ÷ published from {min(ratios):.2f} to {max(ratios):.2f}, "
          f"geometric mean {geomean:.2f}; worst factor {worst:.2f} (bar: 1.5)")


if __name__ == "__main__":
    main()
