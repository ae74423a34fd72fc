"""The digest, App Home and chart views as pure functions: golden Block Kit, and Slack's limits
whatever the sizes. Golden files live in tests/golden/; after a deliberate change to a view,
regenerate them with `UPDATE_GOLDEN=1 python -m pytest tests/test_digest_views.py` and review the diff."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, replace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.views.blocks import MAX_BLOCKS, MAX_HEADER_CHARS, MAX_SECTION_CHARS, MAX_VIEW_BLOCKS
from bot.views.chart import chart_data, draw_chart, spend_chart
from bot.views.digest import digest_blocks, digest_message, digest_text, terminal_text
from bot.views.home import home_view
from jobs.digest.daily import Digest, EndpointRun, ForecastDay, Mover
from jobs.digest.overview import BatchSaving, BudgetStatus, Outlook, Overview

GOLDEN = Path(__file__).parent / "golden"
AS_OF = datetime(2026, 11, 25, 8, 0, 2, tzinfo=timezone.utc)  # 09:00 in Berlin
DUE = datetime(2026, 11, 25, 8, 0, tzinfo=timezone.utc)
TODAY = date(2026, 11, 25)
D = Decimal


def check_golden(name: str, value: Any) -> None:
    path = GOLDEN / f"{name}.json"
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str) + "\n"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"{path} is missing; create it deliberately with UPDATE_GOLDEN=1"
    assert json.loads(path.read_text(encoding="utf-8")) == json.loads(text), \
        f"{name} differs from {path}; if the change is intended, regenerate with UPDATE_GOLDEN=1 and review"


def outlook(key: str, mtd: str, point: str, low: str, high: str, note: str = "", unpriced: int = 0) -> Outlook:
    return Outlook(key, D(mtd), D(point), D(low), D(high), note, unpriced)


def typical_overview() -> Overview:
    total = outlook("total", "14100", "18120.50", "17400", "19050.25",
                    "weekday pattern (Mon highest, Sat 40% lower); level of the last 7 days", unpriced=2_500_000)
    models = [
        outlook("meta-llama/Llama-3.3-70B-Instruct-Turbo", "8200", "10450.10", "9950", "11020"),
        outlook("deepseek-ai/DeepSeek-V3", "4100", "5300", "5000", "5700"),
        outlook("openai/gpt-oss-120b", "1800", "2370.40", "2200", "2600"),
        outlook("acme/secret-model", "0", "0", "0", "0", unpriced=2_500_000),
    ]
    budgets = [
        BudgetStatus("search", "project=search", D(10000), D("8200"), models[0], date(2026, 11, 29)),
        BudgetStatus("support", "project=support", D(1500), D("1800"), models[2]),
        BudgetStatus("everything", "all spend", D(25000), D("14100"), total),
        BudgetStatus("research", "feature=research", D(500), D(0), None),
    ]
    savings = [
        BatchSaving("meta-llama/Llama-3.3-70B-Instruct-Turbo", "project=search · feature=nightly-summaries",
                    D("1210.55"), "82% of tokens between 20:00 and 08:00; long outputs", 2_750_000_000),
        BatchSaving("deepseek-ai/DeepSeek-V3", "api_key=etl", D("340"), "marked offline in settings"),
        BatchSaving("openai/gpt-oss-120b", "feature=classify", D("95.20"), "bursts 9× the median hour"),
        BatchSaving("openai/gpt-oss-20b", "feature=tagging", D("4.10"), "bursts 5× the median hour"),
    ]
    return Overview(AS_OF, TODAY, "Europe/Berlin", total, models, budgets, savings, D("1649.85"),
                    AS_OF - timedelta(hours=1), "*/15 * * * *")


def typical_digest(**changes: Any) -> Digest:
    days = [date(2026, 11, d) for d in range(1, 26)]
    daily = {
        "meta-llama/Llama-3.3-70B-Instruct-Turbo": {d: D(200) if d.weekday() < 5 else D(120) for d in days[:-1]},
        "deepseek-ai/DeepSeek-V3": {d: D(100) for d in days[:-1]},
        "openai/gpt-oss-120b": {d: D(40) + D(d.day) for d in days[:-1]},
    }
    daily["meta-llama/Llama-3.3-70B-Instruct-Turbo"][TODAY] = D("31.50")
    forecast = [ForecastDay(TODAY, D("280.5"), D("250"), D("310"))] + [
        ForecastDay(date(2026, 11, d), D(360), D(330), D(395)) for d in range(26, 31)]
    digest = Digest(
        day=TODAY, due_at=DUE, late=False, overview=typical_overview(),
        yesterday_spend=D("364.00"), day_before_spend=D("363.00"), week_before_spend=D("402.50"),
        movers=[
            Mover("openai/gpt-oss-120b", D("420"), D("310"), "project=support"),
            Mover("deepseek-ai/DeepSeek-V3", D("700"), D("760"), None),
            Mover("acme/new-model", D("12"), D("0"), None),
        ],
        endpoints=[EndpointRun("llama-prod", "meta-llama/Llama-3.3-70B-Instruct-Turbo", 1440, D("144"), 90_000_000,
                               D("3456"))],
        daily=daily, forecast_days=forecast,
    )
    return replace(digest, **changes)


def empty_digest() -> Digest:
    overview = Overview(AS_OF, TODAY, "Europe/Berlin", outlook("total", "0", "0", "0", "0", "no usage yet"), [],
                        [BudgetStatus("search", "project=search", D(10000), D(0), None)], [], D(0), None,
                        "*/15 * * * *")
    return Digest(TODAY, DUE, False, overview, D(0), D(0), D(0), [], [])


# ----------------------------------------------------------------------------- golden


def test_digest_golden() -> None:
    digest = typical_digest()
    check_golden("digest_typical", {"text": digest_text(digest), "blocks": digest_blocks(digest)})


def test_late_digest_golden() -> None:
    back = DUE + timedelta(hours=2, minutes=30)  # the bot came back at 11:30 in Berlin
    digest = typical_digest(late=True, overview=replace(typical_overview(), as_of=back))
    text, blocks = digest_text(digest), digest_blocks(digest)
    assert "(late)" in text and blocks[0]["text"]["text"].endswith("(late)")
    check_golden("digest_late", {"text": text, "blocks": blocks})


def test_empty_digest_golden() -> None:
    digest = empty_digest()
    text, blocks, chart = digest_message(digest)
    assert chart is None
    check_golden("digest_empty", {"text": text, "blocks": blocks})


def test_home_golden() -> None:
    check_golden("home_typical", home_view(typical_overview()))


def test_empty_home_golden() -> None:
    check_golden("home_empty", home_view(empty_digest().overview))


def test_chart_data_golden() -> None:
    """What the chart draws (the PNG's pixels depend on matplotlib's version; these numbers do not)."""
    data = chart_data(typical_digest(), top=2)
    assert data is not None
    assert [label for label, _ in data.stacks] == ["meta-llama/Llama-3.3-70B-Instruct-Turbo",
                                                   "deepseek-ai/DeepSeek-V3", "other (1 model)"]
    assert len(data.days) == 30 and data.forecast[0].day == TODAY
    check_golden("chart_typical", asdict(data))


def test_terminal_text_golden() -> None:
    digest = typical_digest()
    check_golden("digest_terminal", terminal_text(digest_text(digest), digest_blocks(digest)).splitlines())


# ----------------------------------------------------------------------------- behaviour


def test_the_chart_is_a_png_with_the_forecast_band() -> None:
    png = spend_chart(typical_digest())
    assert png is not None and png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1000, 520)
    assert spend_chart(empty_digest()) is None


def test_the_forecast_band_is_a_full_width_box_per_day_labelled_as_the_month_end_range() -> None:
    """Each remaining day gets a box as wide as its bar, from its share of the month-end low to its
    share of the high; the legend does not pass the shares off as a daily 80% interval."""
    data = chart_data(typical_digest())
    assert data is not None
    ax = draw_chart(data).axes[0]
    [band] = [c for c in ax.collections if c.get_alpha() == 0.15]
    boxes = sorted((path.vertices[:, 0].min(), path.vertices[:, 0].max(), path.vertices[:, 1].min(),
                    path.vertices[:, 1].max()) for path in band.get_paths())
    stacked_today = sum(float(values[data.days.index(TODAY)]) for _, values in data.stacks)  # $31.50 so far today
    expected = [(f.day.day - 0.4, f.day.day + 0.4, (stacked_today if f.day == TODAY else 0) + float(f.low),
                 (stacked_today if f.day == TODAY else 0) + float(f.high)) for f in data.forecast]
    assert len(boxes) == len(expected) == 6  # the 25th (today, partial) to the 30th, the last day included
    for got, want in zip(boxes, expected):
        assert got == pytest.approx(want)
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert "month-end 80% range,\nshared by day" in labels and "80% interval" not in labels


def test_how_to_get_usage_in_names_the_configured_pull_schedule() -> None:
    for cron, said in (("*/15 * * * *", "every 15 minutes"), ("*/5 * * * *", "every 5 minutes"),
                       ("* * * * *", "every minute"), ("7 * * * *", "hourly at :07"), ("30 2 * * *", "daily at 02:30"),
                       ("0 9-17 * * 1-5", "on the schedule `0 9-17 * * 1-5` (`PULL_CRON`)")):
        overview = replace(empty_digest().overview, pull_cron=cron)
        for blocks in (digest_blocks(replace(empty_digest(), overview=overview)), home_view(overview)["blocks"]):
            assert f"it is pulled {said}." in json.dumps(blocks, ensure_ascii=False)


def test_the_first_of_the_month_says_how_last_month_closed() -> None:
    first = date(2026, 12, 1)
    overview = replace(typical_overview(), today=first, as_of=datetime(2026, 12, 1, 8, 0, 2, tzinfo=timezone.utc))
    digest = typical_digest(day=first, overview=overview, last_month_spend=D("17950.25"))
    everything = json.dumps(digest_blocks(digest), ensure_ascii=False)
    assert "November closed at $17,950.25." in everything
    assert "*December to date*" in everything and "today so far" in everything and "full day" not in everything
    assert "closed at" not in json.dumps(digest_blocks(typical_digest(last_month_spend=D(1))))


def test_mrkdwn_from_the_ledger_is_escaped() -> None:
    """Model, project and budget names come from pushes and Slack: no mentions, no links."""
    hostile = "<!channel> <@U0BOSS> <https://evil.example|click>"
    overview = typical_overview()
    overview = replace(overview,
                       models=[outlook(hostile, "1", "2", "1", "3")] + overview.models,
                       budgets=[BudgetStatus(hostile, f"project={hostile}", D(10), D(1), None)],
                       savings=[BatchSaving(hostile, f"project={hostile}", D(5), hostile)])
    digest = typical_digest(overview=overview, movers=[Mover(hostile, D(5), D(1), f"project={hostile}")],
                            endpoints=[EndpointRun(hostile, hostile, 60, D(1), 0, D(1))])
    for blocks in (digest_blocks(digest), home_view(overview)["blocks"]):
        everything = json.dumps(blocks)
        assert "<!channel>" not in everything and "<@U0BOSS>" not in everything and "<https://" not in everything
        assert "&lt;!channel&gt;" in everything


def assert_within_limits(blocks: list[dict[str, Any]], max_blocks: int) -> None:
    assert len(blocks) <= max_blocks
    for block in blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= MAX_HEADER_CHARS
        elif block["type"] == "section":
            assert "text" in block or "fields" in block
            assert len(block.get("text", {}).get("text", "")) <= MAX_SECTION_CHARS
            assert len(block.get("fields", [])) <= 10
            assert all(len(f["text"]) <= 2000 for f in block.get("fields", []))
        elif block["type"] == "context":
            assert 1 <= len(block["elements"]) <= 10
            assert all(len(e["text"]) <= MAX_SECTION_CHARS for e in block["elements"])


def sized(models: int, budgets: int, savings: int, endpoints: int, name_length: int) -> Digest:
    pad = "x" * name_length
    model_list = [outlook(f"vendor/model-{i:03d}-{pad}", str(1000 - i), str(2000 - i), str(1900 - i), str(2100 - i))
                  for i in range(models)]
    overview = replace(
        typical_overview(),
        models=model_list,
        budgets=[BudgetStatus(f"b{i:02d}-{pad}"[:64], f"project=p{i}-{pad}", D(1000), D(i * 30),
                              model_list[i % len(model_list)] if model_list else None, date(2026, 11, 28))
                 for i in range(budgets)],
        savings=[BatchSaving(f"vendor/model-{i:03d}-{pad}", f"project=p{i}-{pad}", D(100 - i % 100) + 1,
                             f"bursts {i}× the median hour {pad}") for i in range(savings)],
    )
    return typical_digest(
        overview=overview,
        movers=[Mover(f"vendor/model-{i:03d}-{pad}", D(100 + i), D(50), f"project=p{i}-{pad}") for i in range(models)],
        endpoints=[EndpointRun(f"endpoint-{i}-{pad}", f"vendor/model-{i:03d}-{pad}", 600, D(80), 10_000_000, D(900))
                   for i in range(endpoints)],
    )


def test_200_models_stay_within_block_kit_limits_in_the_digest_and_the_home_tab() -> None:
    digest = sized(models=200, budgets=80, savings=60, endpoints=40, name_length=60)
    blocks = digest_blocks(digest)
    assert_within_limits(blocks, MAX_BLOCKS)
    text = json.dumps(blocks, ensure_ascii=False)
    assert "…and 190 more models" in text and "…and 57 more" in text and "…and 30 more endpoints" in text
    assert len(digest_text(digest)) <= 3000
    home = home_view(digest.overview)["blocks"]
    assert_within_limits(home, MAX_VIEW_BLOCKS)
    assert "…and 100 more models" in json.dumps(home, ensure_ascii=False)


@settings(max_examples=40, deadline=None)
@given(models=st.integers(0, 400), budgets=st.integers(0, 150), savings=st.integers(0, 100),
       endpoints=st.integers(0, 80), name_length=st.integers(0, 200))
def test_any_size_stays_within_block_kit_limits(models: int, budgets: int, savings: int, endpoints: int,
                                                name_length: int) -> None:
    digest = sized(models, budgets, savings, endpoints, name_length)
    assert_within_limits(digest_blocks(digest), MAX_BLOCKS)
    assert_within_limits(home_view(digest.overview)["blocks"], MAX_VIEW_BLOCKS)
