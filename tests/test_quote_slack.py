"""`/costquote` through the real server: signed requests over HTTP, a fake Slack Web API."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from bot.app import create_app
from bot.server import create_server
from bot.views.blocks import MAX_BLOCKS, MAX_HEADER_CHARS, MAX_SECTION_CHARS
from bot.views.quote import quote_blocks
from jobs.config.context import Context
from jobs.config.settings import Settings
from pricing.catalog import load_catalog
from pricing.grammar import parse
from pricing.quote import build_quote
from tests.fakes.slack_api import FakeSlack
from tests.harness import (
    BOT_TOKEN,
    SIGNING_SECRET,
    ServerThread,
    post_slash_command,
    signed_headers,
    slash_command_body,
)


@pytest.fixture(scope="module")
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack(token=BOT_TOKEN) as fake:
        yield fake


@pytest.fixture(scope="module")
def server(fake_slack: FakeSlack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    db = tmp_path_factory.mktemp("quote") / "bg.db"
    settings = Settings(
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=fake_slack.url,
        database_url=f"sqlite:///{db}",
    )
    context = Context.open(settings)
    with ServerThread(create_server(context, create_app(context))) as running:
        yield running
    context.close()


def all_text(blocks: list[dict]) -> str:
    return json.dumps(blocks)


def test_signed_costquote_returns_the_quote_blocks(server: ServerThread) -> None:
    response = post_slash_command(server.url, "maestro 3k/1k x 2M/mo")
    assert response.status_code == 200
    answer = response.json()
    assert answer["response_type"] == "ephemeral"
    text = all_text(answer["blocks"])
    assert "arcee-ai/maestro-reasoning" in text
    assert "$0.0060 / request" in text and "$12,000.00 / month" in text and "$6,000.00 / month" in text
    assert "$12,000.00/month serverless" in answer["text"]


def test_worked_example_per_request_from_slack(server: ServerThread) -> None:
    answer = post_slash_command(server.url, "maestro 4000 1000").json()
    assert "$0.0069 / request" in all_text(answer["blocks"])


def test_a_per_request_amount_over_a_cent_keeps_its_digits_in_slack(server: ServerThread) -> None:
    answer = post_slash_command(server.url, "openai/gpt-4o 3k/1k").json()
    text = all_text(answer["blocks"])
    assert "$0.0175 / request" in text and "$0.00875 / request" in text and "$0.02" not in text
    assert "openai/gpt-4o: $0.0175/request serverless, batch $0.00875/request" in answer["text"]


def test_dedicated_line_from_the_capacity_model_through_slack(server: ServerThread) -> None:
    def answer(text: str) -> str:
        return json.dumps(post_slash_command(server.url, text).json()["blocks"], ensure_ascii=False)

    text = answer("compare llama-3.3-70b deepseek-v3 3k/1k 100k/day dedicated h100")
    assert "on 2× H100 80GB" in text and "on 16× H100 80GB" in text  # DeepSeek-V3 does not fit on fewer
    single = answer("llama-3.3-70b 3k/1k 10k/day dedicated h200")
    assert "*Dedicated endpoint on H200 141GB (estimate)*" in single and "GPUs needed: *1*" in single
    unknown = answer("maestro 3k/1k x 2M/mo")
    assert "no estimate for arcee-ai/maestro-reasoning" in unknown and "$12,000.00 / month" in unknown


def test_public_posts_to_the_channel(server: ServerThread) -> None:
    answer = post_slash_command(server.url, "maestro 3k/1k x 2M/mo public").json()
    assert answer["response_type"] == "in_channel"


def test_help(server: ServerThread) -> None:
    answer = post_slash_command(server.url, "help").json()
    assert "compare" in all_text(answer["blocks"]) and answer["response_type"] == "ephemeral"


def test_bad_input_gets_an_ephemeral_explanation_and_example(server: ServerThread) -> None:
    answer = post_slash_command(server.url, "maestro 3k/1k x 2M/fortnight").json()
    assert answer["response_type"] == "ephemeral"
    text = all_text(answer["blocks"])
    assert "hour, day, week or month" in text and "/costquote maestro 3k/1k x 2M/mo" in text


def test_mentions_in_model_names_are_inert(server: ServerThread) -> None:
    answer = post_slash_command(server.url, "<!channel>*bold* 3k/1k").json()
    error = answer["blocks"][0]
    assert error["text"]["type"] == "plain_text"  # shown verbatim: no mention, no formatting
    for block in answer["blocks"][1:]:
        assert "<!channel>" not in json.dumps(block)
    assert "<!channel>" not in answer["text"] and "&lt;!channel&gt;" in answer["text"]  # the fallback too


def test_forged_signature_is_refused_and_runs_nothing(server: ServerThread, fake_slack: FakeSlack) -> None:
    body = slash_command_body("maestro 3k/1k")
    forged = signed_headers(body, secret="not-the-secret")
    before = len(fake_slack.calls)
    response = httpx.post(f"{server.url}/slack/events", content=body, headers=forged)
    assert response.status_code == 401
    stale = signed_headers(body, timestamp=int(time.time()) - 3600)
    assert httpx.post(f"{server.url}/slack/events", content=body, headers=stale).status_code == 401
    unsigned = httpx.post(f"{server.url}/slack/events", content=body,
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert unsigned.status_code == 401
    assert len(fake_slack.calls) == before


@pytest.mark.parametrize("text", ["llama-3.3-70b 1e999999999/1k", "llama-3.3-70b 3k/1k x 1e999999999/mo",
                                  "in=3000 out=1000 rate=1e999999999/3.30 requests=2M/mo",
                                  "llama-3.3-70b 3k/1k x 1e-999999999/mo"])
def test_huge_exponents_are_a_clear_refusal_not_an_error(server: ServerThread, text: str,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """Issue 15: `1e999999999` raised decimal.Overflow and Slack read "something went wrong"."""
    answer = post_slash_command(server.url, text).json()
    assert answer["response_type"] == "ephemeral" and "went wrong" not in answer["text"]
    assert "exponent out of range" in answer["text"] and "Try: /costquote" in answer["text"]
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_a_malformed_slack_timestamp_is_401_without_a_traceback(server: ServerThread, fake_slack: FakeSlack,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """Issue 15: `X-Slack-Request-Timestamp: abc` answered 200 "something went wrong" and logged a traceback."""
    body = slash_command_body("maestro 3k/1k")
    for stamp in ("abc", "", "1e9", "12345678901234567890", "-5"):
        headers = {**signed_headers(body), "X-Slack-Request-Timestamp": stamp}
        assert httpx.post(f"{server.url}/slack/events", content=body, headers=headers).status_code == 401, stamp
    assert not [r for r in caplog.records if r.levelname == "ERROR" or r.exc_info]


def test_oversize_body_is_refused(server: ServerThread) -> None:
    body = "x" * 6_000_000
    response = httpx.post(f"{server.url}/slack/events", content=body, headers=signed_headers(body))
    assert response.status_code == 413


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300))
def test_any_text_gets_200_and_a_helpful_answer(server: ServerThread, text: str) -> None:
    response = post_slash_command(server.url, text)
    assert response.status_code == 200
    answer = response.json()
    assert answer["blocks"] and answer["text"]
    if answer["response_type"] == "ephemeral" and "couldn't quote" in answer["text"]:
        assert "Try: /costquote" in answer["text"]


def test_fifty_model_comparison_stays_inside_block_kit_limits() -> None:
    catalog = load_catalog()
    models = catalog.models("together")[:50]
    result = build_quote(parse("compare " + " ".join(models) + " 3k/1k 100k/day dedicated h100"), catalog)
    assert len(result.quotes) == 50
    blocks = [b.to_dict() for b in quote_blocks(result)]
    assert len(blocks) <= MAX_BLOCKS
    for block in blocks:
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= MAX_SECTION_CHARS
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= MAX_HEADER_CHARS
    shown = all_text(blocks)
    assert all(m in shown for m in models) or "more models" in shown
    costs = [q.serverless.monthly for q in result.quotes]
    assert costs == sorted(costs) and all(c > Decimal(0) for c in costs if c is not None)
