"""The pricing engine: worked examples, the grammar, forgiving matching, bad input."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest

from bot.cli import main
from jobs.config.catalog import build_catalog
from jobs.config.sections import PriceOverride
from jobs.config.settings import Settings
from pricing.catalog import Price, UnknownModel, load_catalog
from pricing.costs import HOURS_PER_MONTH, SECONDS_PER_MONTH, cluster_quote, dedicated_quote, token_cost
from pricing.grammar import parse
from pricing.lexicon import EXAMPLES, QuoteSyntaxError
from pricing.money import unit_usd, usd
from pricing.quote import build_quote, quote_json


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def quote(text: str, catalog):
    return build_quote(parse(text), catalog)


def test_worked_examples_from_the_together_pricing_guide(catalog):
    four_k = quote("maestro 4000 1000", catalog).quotes[0]
    assert four_k.price.model == "arcee-ai/maestro-reasoning"
    assert four_k.serverless.per_request == Decimal("0.0069")
    assert usd(four_k.serverless.per_request) == "$0.0069"

    monthly = quote("maestro 3k/1k x 2M/mo", catalog).quotes[0]
    assert monthly.serverless.per_request == Decimal("0.0060")
    assert usd(monthly.serverless.per_request) == "$0.0060"
    assert monthly.serverless.monthly == Decimal("12000")
    assert usd(monthly.serverless.monthly) == "$12,000.00"
    assert monthly.batch is not None and monthly.batch.monthly == Decimal("6000")
    assert usd(monthly.batch.monthly) == "$6,000.00"
    assert monthly.batch_saving == Decimal("6000")
    assert monthly.batch_saving_fraction == Decimal("0.5")


def test_per_request_amounts_keep_three_significant_digits_and_totals_stay_to_the_cent():
    assert [unit_usd(Decimal(x)) for x in ("0.0175", "0.024", "0.012", "0.00875", "0.0069", "0.9", "0.12345", "3.3")] \
        == ["$0.0175", "$0.024", "$0.012", "$0.00875", "$0.0069", "$0.90", "$0.123", "$3.30"]
    assert [usd(Decimal(x)) for x in ("0.0175", "1598.104", "12000")] == ["$0.02", "$1,598.10", "$12,000.00"]


def test_gpt_4o_per_request_shows_its_digits_and_json_stays_exact(catalog, capsys):
    q = quote("gpt-4o 3k/1k", catalog).quotes[0]  # 3,000 x $2.50 + 1,000 x $10.00 per 1M; batch half
    assert (q.label, q.serverless.per_request, q.batch.per_request) == ("openai/gpt-4o", Decimal("0.0175"), Decimal("0.00875"))
    assert main(["quote", "openai/gpt-4o 3k/1k"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("openai/gpt-4o"))
    assert row.split()[-5:-3] == ["$0.0175", "$0.00875"]
    assert main(["quote", "openai/gpt-4o 3k/1k", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["per_request"] == {"serverless": "0.0175", "batch": "0.00875"}


def test_cached_tokens_on_a_model_without_a_cached_rate_are_charged_at_input_with_a_note(catalog):
    result = quote("maestro 3k/1k cached=2k", catalog)
    assert result.quotes[0].price.cached_input is None
    assert result.quotes[0].serverless.per_request == quote("maestro 3k/1k", catalog).quotes[0].serverless.per_request
    assert result.notes == ["arcee-ai/maestro-reasoning has no cached-input rate: the cached tokens are charged at "
                            "the input rate."]
    assert quote("maestro 3k/1k", catalog).notes == []


def test_request_cost_formula_with_cached_input():
    price = Price("together", "m", Decimal("1.00"), Decimal("2.00"), cached_input=Decimal("0.10"))
    # 1,000 input of which 400 cached, 500 output: 600×1 + 400×0.1 + 500×2 per 1M.
    assert token_cost(price, 1000, 500, 400) == Decimal("0.00164")
    no_cache = Price("together", "m", Decimal("1.00"), Decimal("2.00"))
    assert token_cost(no_cache, 1000, 500, 400) == Decimal("0.002")


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_grammar_example_quotes(example, catalog):
    result = quote(example, catalog)
    assert result.quotes or result.cluster


def test_grammar_forms_agree(catalog):
    a = quote("llama-3.3-70b in=3000 out=1000 requests=2M/month", catalog).quotes[0]
    b = quote("llama-3.3-70b 3k/1k x 2M/mo", catalog).quotes[0]
    c = quote("LLAMA-3.3-70B 3,000/1,000 2,000,000 per month", catalog).quotes[0]
    assert a.serverless.monthly == b.serverless.monthly == c.serverless.monthly
    assert a.price.model == "meta-llama/Llama-3.3-70B-Instruct-Turbo"


def test_per_day_and_per_hour_volumes_use_a_month_of_30_44_days(catalog):
    day = quote("maestro 3k/1k 100k/day", catalog).quotes[0]
    assert day.requests_per_month == Decimal(100_000) * Decimal("30.44")
    hour = quote("maestro 3k/1k 1k/hour", catalog).quotes[0]
    assert hour.requests_per_month == Decimal(1000) * Decimal("30.44") * 24
    week = quote("maestro 3k/1k 7k/week", catalog).quotes[0]
    assert week.requests_per_month == Decimal(7000) * Decimal("30.44") / 7
    february = quote("maestro 3k/1k 100k/day month=2026-02", catalog).quotes[0]
    assert february.requests_per_month == Decimal(2_800_000)


def test_token_volumes_become_requests(catalog):
    q = quote("qwen3-235b 2k/500 50M tokens/day dedicated h100", catalog).quotes[0]
    assert q.tokens_per_month == Decimal(50_000_000) * Decimal("30.44")
    assert q.requests_per_month == q.tokens_per_month / 2500
    assert q.dedicated is not None and q.dedicated.hardware.gpu == "h100"


def test_compare_is_sorted_by_monthly_cost(catalog):
    result = quote("compare llama-3.3-70b deepseek-v3 gpt-oss-120b 3k/1k 100k/day", catalog)
    costs = [q.serverless.monthly for q in result.quotes]
    assert costs == sorted(costs)
    assert {q.price.model for q in result.quotes} == {
        "meta-llama/Llama-3.3-70B-Instruct-Turbo", "deepseek-ai/DeepSeek-V3", "openai/gpt-oss-120b"}


def test_custom_rate_needs_no_model(catalog):
    q = quote("in=3000 out=1000 rate=0.90/3.30 requests=2M/month", catalog).quotes[0]
    assert q.serverless.monthly == Decimal("12000")


def test_forgiving_matching_names_runners_up(catalog):
    match = catalog.resolve("llama-3.3-70b")
    assert match.model == "meta-llama/Llama-3.3-70B-Instruct-Turbo"
    assert "meta-llama/Meta-Llama-3.3-70B-Instruct-Turbo" in match.runners_up
    assert catalog.resolve("Meta-Llama/llama_3.3_70b_instruct_turbo").model == "meta-llama/Llama-3.3-70B-Instruct-Turbo"
    assert catalog.resolve("together/maestro").model == "arcee-ai/maestro-reasoning"
    other = catalog.resolve("openai/gpt-4o")
    assert (other.provider, other.model) == ("openai", "gpt-4o")


def test_unknown_model_suggests_the_closest_three(catalog):
    with pytest.raises(UnknownModel) as info:
        catalog.resolve("llma-3.3")
    assert len(info.value.suggestions) == 3
    assert info.value.suggestions[0] == "meta-llama/Llama-3.3-70B-Instruct-Turbo"
    with pytest.raises(QuoteSyntaxError, match="did you mean"):
        quote("llma-3.3 3k/1k", catalog)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("maestro", "how many tokens"),
        ("maestro 3000", "both input and output"),
        ("maestro 0/0", "cannot both be 0"),
        ("maestro -5/3", "negative"),
        ("maestro 1e30/1", "too large"),
        ("maestro nan/1", "not nan"),
        ("maestro 3k/1k x 0/mo", "more than 0"),
        ("maestro 3k/1k x 1e30/mo", "too large"),
        ("maestro 3k/1k x 2M/fortnight", "hour, day, week or month"),
        ("maestro deepseek-v3 3k/1k", "start with `compare`"),
        ("compare maestro 3k/1k", "two or more"),
        ("maestro 3k/1k dedicated", "needs a volume"),
        ("maestro 3k/1k 1M/day dedicated zz9", "no dedicated hardware"),
        ("maestro 3k/1k bogus=1", "unknown setting"),
        ("maestro 3k/1k 2M/mo 3M/mo", "given twice"),
    ],
)
def test_bad_input_says_what_is_wrong(text, fragment, catalog):
    with pytest.raises(QuoteSyntaxError) as info:
        quote(text, catalog)
    assert fragment in info.value.message
    # The corrected example parses.
    assert parse(info.value.example).kind in {"quote", "compare", "cluster"}


def test_a_price_lookup_takes_a_date():
    catalog = load_catalog()
    # genai-prices start-dates this model's price change on 2026-10-19.
    before = catalog.price("together", "together/Tev1-4B-experimental", date(2026, 10, 18))
    after = catalog.price("together", "together/Tev1-4B-experimental", date(2026, 10, 19))
    assert before is not None and after is not None
    assert before.input == Decimal("0.04") and after.input == Decimal("0.042")


def test_operator_overrides_win_from_their_start_date():
    settings = Settings(prices=[PriceOverride(model="arcee-ai/maestro-reasoning", input=Decimal("0.5"),
                                              output=Decimal("2"), start=date(2026, 6, 1), batch=False)])
    catalog = build_catalog(settings)
    assert catalog.price("together", "arcee-ai/maestro-reasoning", date(2026, 5, 31)).input == Decimal("0.90")
    negotiated = catalog.price("together", "arcee-ai/maestro-reasoning", date(2026, 6, 1))
    assert negotiated.input == Decimal("0.5") and negotiated.source == "config"
    assert negotiated.batch() is None
    q = build_quote(parse("maestro 3k/1k x 2M/mo"), catalog, at=date(2026, 7, 1)).quotes[0]
    assert q.batch is None and q.cheapest in {"serverless", "dedicated"}


def test_model_batch_does_not_serve_says_so(catalog):
    q = quote("together/Tev1-4B-experimental 3k/1k 1M/mo", catalog).quotes[0]
    assert q.batch is None


def test_dedicated_gpus_cost_and_break_even():
    from pricing.catalog import HardwareOption

    h100 = HardwareOption("h100", 1, Decimal("3.99"))
    # A one-GPU replica serving 1,000 tokens/s; 5B tokens a month needs ceil(5e9 / (1000 × 30.44×86400)) = 2.
    d = dedicated_quote(h100, 1, Decimal(1000), Decimal(5_000_000_000), Decimal("2.00"))
    assert (d.replicas, d.gpus, d.set_by) == (2, 2, "throughput")
    assert d.monthly_cost == Decimal("3.99") * HOURS_PER_MONTH * 2
    assert d.effective_per_million == d.monthly_cost / Decimal(5000)
    # Break-even: one replica's month / $2 per 1M tokens.
    assert d.break_even_tokens_per_month == Decimal("3.99") * HOURS_PER_MONTH / Decimal(2) * 1_000_000
    planned = dedicated_quote(h100, 1, Decimal(1000), Decimal(1_000_000_000), Decimal("2.00"), utilization=Decimal("0.25"))
    assert planned.gpus == 2  # 1e9 over 25% of 2.63e9 per GPU
    never = dedicated_quote(h100, 1, Decimal(10), Decimal(1_000_000), Decimal("0.10"))
    assert never.break_even_tokens_per_month is None


def test_dedicated_replicas_of_a_group_and_break_even_against_batch():
    from pricing.catalog import HardwareOption

    bundle = HardwareOption("h100", 8, Decimal("31.92"))  # rented eight at a time
    # Replicas of 2 GPUs at 20,000 tokens/s each: 3 replicas = 6 GPUs, one 8-GPU configuration.
    d = dedicated_quote(bundle, 2, Decimal(20000), Decimal(20000) * SECONDS_PER_MONTH * 3, Decimal("1.00"),
                        batch_per_million=Decimal("0.50"))
    assert (d.replicas, d.gpus, d.group_gpus) == (3, 8, 2)
    assert d.monthly_cost == Decimal("31.92") * HOURS_PER_MONTH
    one_replica = Decimal("31.92") * HOURS_PER_MONTH  # the smallest rental holds one replica
    assert d.break_even_tokens_per_month == one_replica / Decimal("1.00") * 1_000_000
    assert d.batch_break_even_tokens_per_month == one_replica / Decimal("0.50") * 1_000_000
    alone = dedicated_quote(bundle, 2, Decimal(20000), Decimal(1_000_000), Decimal("1.00"))
    assert (alone.replicas, alone.set_by) == (1, "memory")
    slow = dedicated_quote(bundle, 2, Decimal(2000), Decimal(1_000_000), Decimal("1.00"), batch_per_million=Decimal("0.50"))
    assert slow.break_even_tokens_per_month is None and slow.batch_break_even_tokens_per_month is None


def test_cluster_quote():
    c = cluster_quote(8, Decimal(720), Decimal("3.99"), Decimal(20000))
    assert c.cost == Decimal("22982.40")
    assert c.effective_per_million == c.cost / (Decimal(20000) * 720 * 3600) * 1_000_000


def test_cli_quote_worked_examples(capsys):
    assert main(["quote", "maestro 3k/1k x 2M/mo", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "arcee-ai/maestro-reasoning" and data["provider"] == "together"
    assert (data["input_tokens"], data["output_tokens"]) == (3000, 1000)
    assert Decimal(data["requests_per_month"]) == 2_000_000
    assert Decimal(data["per_request"]["serverless"]) == Decimal("0.006")
    assert Decimal(data["monthly"]["serverless"]) == Decimal("12000")
    assert Decimal(data["monthly"]["batch"]) == Decimal("6000")

    assert main(["quote", "maestro", "4000", "1000"]) == 0
    table = capsys.readouterr().out
    assert "$0.0069" in table


def test_cli_bad_input_exits_2_with_the_slack_message(capsys):
    assert main(["quote", "maestro 3k/1k x 2M/fortnight"]) == 2
    err = capsys.readouterr().err
    assert "hour, day, week or month" in err and "Try: /costquote" in err


def test_quote_json_is_exact_for_compare(catalog):
    data = quote_json(quote("compare maestro deepseek-v3 3k/1k 2M/mo", catalog))
    # DeepSeek-V3 at $1.25/$1.25 costs $0.0050 a request, maestro $0.0060: cheapest first.
    assert isinstance(data, list) and [d["model"] for d in data] == ["deepseek-ai/DeepSeek-V3", "arcee-ai/maestro-reasoning"]
    assert Decimal(data[0]["monthly"]["serverless"]) == Decimal("10000")
    assert Decimal(data[1]["monthly"]["serverless"]) == Decimal("12000")
