"""The capacity model: published throughput within the bar, fits that physics allows, and the
dedicated line it gives /costquote and `budget-guard quote` (estimates labelled, measured wins)."""

from __future__ import annotations

import json
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from bot.cli import main
from bot.commands.quote import render_table
from bot.views.quote import quote_blocks
from jobs.config.catalog import build_catalog
from jobs.config.sections import ModelFactsOverride, Throughput
from jobs.config.settings import ConfigError, Settings, load_settings
from pricing import capacity
from pricing.catalog import load_catalog
from pricing.facts import DATA, gpu_facts, load_model_facts, model_facts, with_precision
from pricing.grammar import parse
from pricing.quote import build_quote, quote_json

PUBLISHED = tomllib.loads((Path(__file__).parent / "data" / "published_throughput.toml").read_text())["measurement"]
FACTS = load_model_facts()
H100 = gpu_facts("h100")
DEEPSEEK = FACTS["deepseek-ai/DeepSeek-V3"]
LLAMA_8B = FACTS["meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo"]
BAR = 1.5


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def quote(text: str, catalog):
    return build_quote(parse(text), catalog)


def dedicated_text(result) -> str:
    blocks = [b.to_dict() for b in quote_blocks(result)]
    return next(b["text"]["text"] for b in blocks if "Dedicated" in b.get("text", {}).get("text", ""))


# -- the accuracy bar -------------------------------------------------------------------------

def test_the_published_figures_are_for_our_catalog_on_h100_and_h200(catalog):
    assert len(PUBLISHED) >= 6
    assert len({m["model"] for m in PUBLISHED}) >= 6
    for m in PUBLISHED:
        assert m["model"] in catalog.models("together") and m["model"] in FACTS
        assert m["gpu"] in {"h100", "h200"} and m["source"].startswith("https://")
        assert m["gpus"] >= 1 and m["output_tokens_per_second"] > 0 and m["setup"]


@pytest.mark.parametrize(
    "m", PUBLISHED,
    ids=[f"{m['published_as']}-{m['gpus']}x{m['gpu']}-{m['input_tokens']}/{m['output_tokens']}"
         f"-c{m.get('concurrency', 'max')}" for m in PUBLISHED])
def test_estimate_lands_within_a_factor_of_1_5_of_each_published_figure(m):
    facts = with_precision(FACTS[m["model"]], m["precision"])
    gpu = gpu_facts(m["gpu"])
    estimate = capacity.estimate(facts, gpu, m["input_tokens"], m["output_tokens"], m["gpus"], m.get("concurrency"))
    assert estimate is not None
    ratio = estimate.output_tokens_per_second / m["output_tokens_per_second"]
    assert 1 / BAR <= ratio <= BAR, (f"ours {estimate.output_tokens_per_second:,.0f} "
                                     f"vs published {m['output_tokens_per_second']:,}")


# -- fit ---------------------------------------------------------------------------------------

@hypothesis_settings(max_examples=80, deadline=None)
@given(input_tokens=st.integers(1, 100_000), output_tokens=st.integers(0, 30_000),
       requests_per_second=st.floats(0, 10_000))
def test_deepseek_v3_never_fits_on_fewer_than_8_h100s(input_tokens, output_tokens, requests_per_second):
    sizing = capacity.size(DEEPSEEK, H100, input_tokens, output_tokens, requests_per_second)
    assert sizing.gpus is None or sizing.gpus >= 8
    for gpus in (1, 2, 4):
        assert capacity.estimate(DEEPSEEK, H100, input_tokens, output_tokens, gpus) is None


def test_deepseek_v3_quoted_on_h100_takes_two_nodes_and_on_h200_one(catalog):
    on_h100 = quote("deepseek-v3 3k/1k 100k/day dedicated h100", catalog).quotes[0]
    assert on_h100.dedicated is not None and on_h100.dedicated.group_gpus == 16 and on_h100.dedicated.gpus >= 16
    assert "671 GB of FP8 weights" in on_h100.capacity.reason
    on_h200 = quote("deepseek-v3 3k/1k 100k/day dedicated h200", catalog).quotes[0]
    assert on_h200.dedicated.group_gpus == 8


def test_an_8b_model_fits_on_one_h100(catalog):
    sizing = capacity.size(LLAMA_8B, H100, 3000, 1000, 5.0)
    assert sizing.gpus == 1 and sizing.estimate is not None and sizing.estimate.batch >= capacity.TARGET_CONCURRENCY
    q = quote("llama-3.1-8b 3k/1k 10k/day dedicated h100", catalog).quotes[0]
    assert q.dedicated.group_gpus == 1 and q.dedicated.gpus == 1 and q.dedicated.set_by == "memory"


def test_group_sizes_follow_the_weights(catalog):
    llama_70b = FACTS["meta-llama/Llama-3.3-70B-Instruct-Turbo"]  # 70.6 GB at FP8
    assert capacity.size(llama_70b, H100, 3000, 1000, 5.0).gpus == 2
    assert capacity.size(llama_70b, gpu_facts("h200"), 3000, 1000, 5.0).gpus == 1
    at_fp16 = with_precision(llama_70b, "fp16")  # 141 GB
    assert capacity.size(at_fp16, H100, 3000, 1000, 5.0).gpus == 4


def test_a_model_that_fits_nowhere_says_so(catalog):
    huge = model_facts("huge", {"parameters": 9000, "layers": 200, "attention_heads": 128,
                                "kv_heads": 8, "head_dim": 128, "context": 32768, "precision": "fp16"})
    sizing = capacity.size(huge, H100, 3000, 1000, 1.0)
    assert sizing.gpus is None and sizing.estimate is None
    assert "18,000 GB of FP16 weights" in sizing.reason and "64 × H100 80GB" in sizing.reason
    giant = ModelFactsOverride(model="arcee-ai/maestro-reasoning", parameters=9000, layers=200, attention_heads=128,
                               kv_heads=8, head_dim=128, context=32768, precision="fp16")
    q = quote("maestro 3k/1k x 2M/mo", build_catalog(Settings(model_facts=[giant]))).quotes[0]
    assert q.dedicated is None and q.dedicated_note.startswith("arcee-ai/maestro-reasoning fits nowhere on H100 80GB: ")
    too_long = quote("llama-2-70b 8k/1k 1k/day dedicated h100", catalog).quotes[0]
    assert too_long.dedicated is None
    assert too_long.dedicated_note == ("no estimate for meta-llama/Llama-2-70b-chat-hf: a request of 9,000 tokens "
                                       "is longer than its context of 4,096")
    assert "longer than the model's context" in capacity.size(FACTS["meta-llama/Llama-2-70b-chat-hf"], H100,
                                                              8000, 1000, 1.0).reason


# -- the dedicated line --------------------------------------------------------------------------

def test_memory_or_throughput_sets_the_gpus(catalog):
    light = quote("llama-3.3-70b 3k/1k 10k/day dedicated h100", catalog).quotes[0]
    assert (light.dedicated.replicas, light.dedicated.set_by, light.dedicated.gpus) == (1, "memory", 2)
    heavy = quote("llama-3.3-70b 3k/1k 3M/day dedicated h100 util=60%", catalog).quotes[0]
    d = heavy.dedicated
    assert d.set_by == "throughput" and d.replicas > 1 and d.gpus == d.replicas * d.group_gpus
    assert d.utilization <= Decimal("0.6")
    # Replicas carry the volume at the planned utilization: one fewer would not.
    capacity_per_replica = d.group_tokens_per_second * Decimal(30.44 * 86400)
    assert heavy.tokens_per_month <= capacity_per_replica * d.replicas * Decimal("0.6")
    assert heavy.tokens_per_month > capacity_per_replica * (d.replicas - 1) * Decimal("0.6")


def test_dedicated_line_gives_break_even_latency_and_labels_the_estimate(catalog):
    result = quote("llama-3.3-70b 3k/1k 100k/day dedicated h100", catalog)
    q = result.quotes[0]
    assert q.capacity.source == "estimate" and any("estimates" in n for n in result.notes)
    data = quote_json(result)["dedicated"]
    assert data["throughput_is_estimate"] is True and data["set_by"] == "memory"
    assert Decimal(data["break_even_tokens_per_month"]) > 0
    assert Decimal(data["break_even_vs_batch_tokens_per_month"]) == 2 * Decimal(data["break_even_tokens_per_month"])
    assert 0 < Decimal(data["time_to_first_token_seconds"]) < 5
    at_load, at_full_load = (Decimal(data[f"output_tokens_per_second_per_request{suffix}"])
                             for suffix in ("", "_at_full_load"))
    assert at_load >= at_full_load
    text = dedicated_text(result)
    # The heading says what the line is; the old "Dedicated (1x H100 80GB): 2 GPUs" is gone.
    assert text.startswith("*Dedicated endpoint on H100 80GB (estimate)*")
    assert "GPUs needed: *2* = 1 replica × 2 GPUs, set by memory" in text
    assert "vs serverless" in text and "vs batch" in text and "first token after ≈" in text
    assert "Dedicated (1x" not in json.dumps([b.to_dict() for b in quote_blocks(result)])


def test_no_architecture_facts_omits_the_line_with_one_sentence(catalog):
    result = quote("maestro 3k/1k x 2M/mo", catalog)
    q = result.quotes[0]
    # The seed's money is untouched.
    assert q.serverless.monthly == Decimal("12000") and q.batch.monthly == Decimal("6000")
    assert q.dedicated is None and q.capacity is None
    assert q.dedicated_note.count(".") <= 1 and "[[model_facts]]" in q.dedicated_note
    text = dedicated_text(result)
    assert "$" not in text and "GPUs needed" not in text
    assert quote_json(result)["dedicated_note"] == q.dedicated_note and "dedicated" not in quote_json(result)
    custom = quote("in=3000 out=1000 rate=0.90/3.30 requests=2M/month", catalog).quotes[0]
    assert custom.dedicated is None and "names no model" in custom.dedicated_note
    closed = quote("openai/gpt-4o 3k/1k 1M/mo", catalog).quotes[0]
    assert closed.dedicated is None and "not in our model facts" in closed.dedicated_note


def test_measured_throughput_wins_over_the_estimate():
    model = "meta-llama/Llama-3.3-70B-Instruct-Turbo"
    measured = Throughput(model=model, gpu="h100", tokens_per_second=Decimal(1234))
    catalog = build_catalog(Settings(throughput=[measured]))
    result = quote("llama-3.3-70b 3k/1k 100k/day dedicated h100", catalog)
    q = result.quotes[0]
    assert q.capacity.source == "measured"
    assert q.dedicated.group_gpus == 2 and q.dedicated.group_tokens_per_second == Decimal(1234) * 2
    assert not any("estimates" in n for n in result.notes)
    assert "(your measured throughput)" in dedicated_text(result)
    assert quote_json(result)["dedicated"]["throughput_is_estimate"] is False


def test_a_default_throughput_stands_in_only_where_the_model_cannot_estimate():
    default = Throughput(model="default", gpu="h100", tokens_per_second=Decimal(2000))
    catalog = build_catalog(Settings(throughput=[default]))
    unknown = quote("maestro 3k/1k x 2M/mo", catalog).quotes[0]
    assert unknown.capacity.source == "default" and unknown.dedicated.group_gpus == 1
    assert "not checked" in unknown.capacity.reason
    known = quote("llama-3.3-70b 3k/1k 100k/day", catalog).quotes[0]
    assert known.capacity.source == "estimate"


def test_operator_model_facts_add_a_model_and_override_ours():
    maestro = ModelFactsOverride(model="arcee-ai/maestro-reasoning", parameters=32.8, layers=64, attention_heads=40,
                                 kv_heads=8, head_dim=128, context=32768, precision="fp16")
    served_at_fp16 = ModelFactsOverride(model="meta-llama/Llama-3.3-70B-Instruct-Turbo", precision="fp16")
    catalog = build_catalog(Settings(model_facts=[maestro, served_at_fp16]))
    q = quote("maestro 3k/1k x 2M/mo", catalog).quotes[0]
    assert q.dedicated is not None and q.capacity.source == "estimate" and "66 GB of FP16 weights" in q.capacity.reason
    assert q.serverless.monthly == Decimal("12000")  # money unchanged
    assert catalog.model_facts["arcee-ai/maestro-reasoning"].source == "budget-guard.toml"
    llama = quote("llama-3.3-70b 3k/1k 10k/day dedicated h100", catalog).quotes[0]
    assert llama.dedicated.group_gpus == 4 and "FP16" in llama.capacity.reason


def test_incomplete_model_facts_stop_start_up_naming_the_key(tmp_path, monkeypatch):
    path = tmp_path / "budget-guard.toml"
    path.write_text('[[model_facts]]\nmodel = "arcee-ai/maestro-reasoning"\nparameters = 32\n')
    with pytest.raises(ConfigError, match=r"^model_facts: arcee-ai/maestro-reasoning: needs layers"):
        load_settings(path)
    path.write_text('[[model_facts]]\nmodel = "deepseek-ai/DeepSeek-V3"\nprecision = "fp7"\n')
    with pytest.raises(ConfigError, match=r"model_facts\.0\.precision"):
        load_settings(path)


def test_gpu_facts_answer_to_together_names():
    for name in ("h100", "H100_SXM", "H100_SXM_INF", "h100-80gb", "1x_nvidia_h100_80gb_sxm"):
        assert gpu_facts(name) is H100
    assert gpu_facts("2x_nvidia_a100_80gb_sxm").label == "A100 80GB"
    assert gpu_facts("H200_SXM").memory_gb == 141 and gpu_facts("B200_SXM").fp8_tflops == 4500
    assert gpu_facts("L40_PCIE").interconnect == "pcie"
    assert gpu_facts("RTX_6000_PCI") is None  # which RTX 6000 is not said, so not guessed


def test_every_figure_in_our_facts_names_its_source():
    data = tomllib.loads((Path(DATA) / "models.toml").read_text())
    assert all(a["source"].startswith("https://huggingface.co/") for a in data["architectures"].values())
    assert all(m["source"].startswith("https://docs.together.ai/") for m in data["models"])
    gpus = tomllib.loads((Path(DATA) / "gpus.toml").read_text())["gpu"]
    assert all(g["source"].startswith("https://www.nvidia.com/") for g in gpus)


# -- compare names its models (issue 14, item 3) ---------------------------------------------------

def test_compare_summary_lines_sit_under_their_model(catalog, capsys):
    result = quote("compare llama-3.3-70b deepseek-v3 qwen3-235b maestro 3k/1k 100k/day", catalog)
    table = render_table(result).splitlines()
    headings = [i for i, line in enumerate(table) if line.endswith(":") and not line.startswith(" ")]
    assert [table[i][:-1] for i in headings] == [q.label for q in result.quotes]
    for start, end in zip(headings, headings[1:] + [len(table)]):
        block = table[start + 1:end]
        assert sum(line.strip().startswith("batch saves") for line in block) == 1
        assert sum(line.strip().startswith("Dedicated endpoint") for line in block) == 1
    # No summary line outside a model's block, before the first heading and after the table.
    top = table[:headings[0]]
    assert not any(line.startswith(("batch saves", "dedicated", "Dedicated", "cheapest")) for line in top)
    blocks = json.dumps([b.to_dict() for b in quote_blocks(result)])
    assert "No dedicated estimate for arcee-ai/maestro-reasoning" in blocks
    assert main(["quote", "compare llama-3.3-70b deepseek-v3 3k/1k 100k/day", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {d["model"]: d["dedicated"]["gpus_per_replica"] for d in data} == {
        "meta-llama/Llama-3.3-70B-Instruct-Turbo": 2, "deepseek-ai/DeepSeek-V3": 16}
