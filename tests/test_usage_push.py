"""The push helper with real clients: httpx, the `openai` SDK (sync and async) and the `together`
SDK calling a fake provider on 127.0.0.1, their usage pushed to the real server; and the caller
never waiting on, or failing because of, a bot that is down or hangs."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
import together

from bot.server import create_server
from bot.usage_push import UsagePusher
from db.totals import totals
from jobs.config.context import Context
from jobs.config.settings import Settings
from tests.fakes.chat_api import FakeChatAPI
from tests.fakes.http_server import FakeHTTPServer, RecordedRequest, Response
from tests.harness import ServerThread

MODEL = "meta-llama/Llama-3.3-70B-Instruct-Turbo"
ASK = [{"role": "user", "content": "How much did this cost?"}]


@pytest.fixture
def app_settings(sqlite_url: str) -> Settings:
    return Settings(database_url=sqlite_url, ingest_tokens="search=tok_push")


@pytest.fixture
def bot(context: Context) -> Iterator[ServerThread]:
    with ServerThread(create_server(context, None)) as running:
        yield running


@pytest.fixture
def provider() -> Iterator[FakeChatAPI]:
    with FakeChatAPI() as api:
        yield api


def ledger(context: Context, by: str = "model") -> dict:
    with context.sessions() as session:
        return {g.key: g for g in totals(session, None, None, by)}  # type: ignore[arg-type]


def test_openai_together_and_httpx_clients_push_the_providers_usage_once(
        bot: ServerThread, provider: FakeChatAPI, context: Context) -> None:
    pusher = UsagePusher(bot.url, "tok_push", feature="support-bot", flush_interval=0.05)
    oai = pusher.attach(openai.OpenAI(base_url=provider.url, api_key=provider.api_key, max_retries=0))
    tog = pusher.attach(together.Together(base_url=provider.origin, api_key=provider.api_key, max_retries=0))
    raw = pusher.attach(httpx.Client(base_url=provider.url, headers={"Authorization": f"Bearer {provider.api_key}"}))
    for _ in range(3):
        oai.chat.completions.create(model=MODEL, messages=ASK)
    oai.embeddings.create(model="BAAI/bge-large-en-v1.5", input="text")
    tog.chat.completions.create(model=MODEL, messages=ASK)
    raw.post("/chat/completions", json={"model": MODEL, "messages": ASK}).raise_for_status()
    raw.get("/models")  # not a POST answered with usage: ignored
    assert pusher.flush(10)
    pusher.close()

    assert pusher.stats.sent == 6 and pusher.stats.failed == pusher.stats.dropped == 0
    chats = [u for n, u in enumerate(provider.served) if n != 3]
    row = ledger(context)[MODEL]
    assert row.input_tokens == sum(u["prompt_tokens"] for u in chats)
    assert row.output_tokens == sum(u["completion_tokens"] for u in chats)
    assert row.cached_input_tokens == sum(u["prompt_tokens_details"]["cached_tokens"] for u in chats)
    assert row.requests == 5
    assert ledger(context)["BAAI/bge-large-en-v1.5"].input_tokens == provider.served[3]["prompt_tokens"]
    assert set(ledger(context, "feature")) == {"support-bot"}
    assert set(ledger(context, "project")) == {"search"}  # the token's


def test_the_async_openai_client(bot: ServerThread, provider: FakeChatAPI, context: Context) -> None:
    pusher = UsagePusher(bot.url, "tok_push", flush_interval=0.05)

    async def calls() -> None:
        client = pusher.attach(openai.AsyncOpenAI(base_url=provider.url, api_key=provider.api_key, max_retries=0))
        await asyncio.gather(*(client.chat.completions.create(model=MODEL, messages=ASK) for _ in range(4)))
        await client.close()

    asyncio.run(calls())
    pusher.close()
    assert pusher.stats.sent == 4
    assert ledger(context)[MODEL].requests == 4


class HangingBot(FakeHTTPServer):
    """A bot that takes every push but never answers in time."""

    def handle(self, request: RecordedRequest) -> Response:
        return Response.json({"accepted": 0, "duplicates": 0})


def test_a_bot_that_hangs_or_is_gone_costs_the_caller_nothing(provider: FakeChatAPI) -> None:
    with HangingBot() as hanging:
        hanging.hang_next(seconds=10, times=100)
        pusher = UsagePusher(hanging.origin, "tok_push", batch_size=1, flush_interval=0.01, max_queue=3,
                             timeout=5, flush_timeout=0.5)
        client = pusher.attach(openai.OpenAI(base_url=provider.url, api_key=provider.api_key, max_retries=0))
        for _ in range(8):
            client.chat.completions.create(model=MODEL, messages=ASK)
        # Every call came back while the first push still waits for the bot.
        assert len(provider.served) == 8 and len(hanging.requests) == 1
        started = time.monotonic()
        pusher.close()
        assert time.monotonic() - started < 3  # close keeps to its flush_timeout, give or take the join
        stats = pusher.stats
        assert stats.sent == 0 and stats.dropped >= 4 and stats.dropped + stats.failed == 8

    gone = UsagePusher("http://127.0.0.1:9", "tok_push", flush_interval=0.01, retries=1, flush_timeout=2)
    client = gone.attach(openai.OpenAI(base_url=provider.url, api_key=provider.api_key, max_retries=0))
    answer = client.chat.completions.create(model=MODEL, messages=ASK)
    assert answer.usage is not None and answer.usage.prompt_tokens == provider.served[-1]["prompt_tokens"]
    gone.close()
    assert gone.stats.failed == 1 and gone.stats.sent == 0


def test_records_the_bot_refuses_are_dropped_and_the_rest_pushed(bot: ServerThread, context: Context) -> None:
    answers = iter([{"prompt_tokens": 100, "completion_tokens": 10}, {"prompt_tokens": -4, "completion_tokens": 1},
                    {"prompt_tokens": 300, "completion_tokens": 30}])

    def provider(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"id": f"cmpl-{time.monotonic_ns()}", "created": int(time.time()),
                                         "model": MODEL, "usage": next(answers)})

    pusher = UsagePusher(bot.url, "tok_push", batch_size=10, flush_interval=5)
    client = pusher.attach(httpx.Client(transport=httpx.MockTransport(provider)))
    for _ in range(3):
        client.post("https://api.together.xyz/v1/chat/completions", content=json.dumps({"model": MODEL}))
    pusher.close()
    assert (pusher.stats.sent, pusher.stats.rejected) == (2, 1)
    row = ledger(context)[MODEL]
    assert (row.input_tokens, row.requests) == (400, 2)


def test_attach_says_what_it_needs() -> None:
    pusher = UsagePusher("http://127.0.0.1:9", "tok", flush_timeout=0.1)
    with pytest.raises(TypeError, match="httpx.Client"):
        pusher.attach(object())
    pusher.close()
