"""A fake OpenAI-compatible inference API (`POST /v1/chat/completions`, `/v1/embeddings`), as
together.ai and OpenAI answer them, and a forwarding proxy that can misbehave in front of a server.

Each answer's token counts differ (the n-th call of a run uses `usage_for(n)`), and the fake keeps
every `usage` it returned, so a test can sum what the provider said and compare the ledger.

    with FakeChatAPI() as api:
        openai.OpenAI(base_url=api.url, api_key=api.api_key).chat.completions.create(...)
        api.served  # [{"prompt_tokens": ..., "completion_tokens": ..., ...}]
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from tests.fakes.http_server import FakeHTTPServer, RecordedRequest, Response, api_error

__all__ = ["FakeChatAPI", "ForwardingProxy", "usage_for"]


def usage_for(n: int) -> dict[str, Any]:
    """The usage of the n-th answer (from 0): different counts each time, some with cached input."""
    prompt = 1200 + 37 * n
    cached = 256 * (n % 3)
    completion = 150 + 11 * n
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached}}


class FakeChatAPI(FakeHTTPServer):
    """Chat completions and embeddings; `url` is the API base (`http://127.0.0.1:PORT/v1`)."""

    def __init__(self, *, api_key: str = "sk-test-provider") -> None:
        super().__init__()
        self.api_key = api_key
        self.served: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"{self.origin}/v1"

    def handle(self, request: RecordedRequest) -> Response:
        if request.bearer_token != self.api_key:
            return Response.json(api_error(401, "invalid_api_key", "Incorrect API key provided."), 401)
        if request.method != "POST" or request.path not in ("/v1/chat/completions", "/v1/embeddings"):
            return Response.json(api_error(404, None, f"Invalid URL ({request.method} {request.path})"), 404)
        try:
            body = json.loads(request.body)
        except ValueError:
            return Response.json(api_error(400, None, "We could not parse the JSON body of your request."), 400)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return Response.json(api_error(400, None, "you must provide a model parameter"), 400)
        usage = usage_for(len(self.served))
        self.served.append(usage)
        if request.path == "/v1/embeddings":
            return Response.json({"object": "list", "model": model,
                                  "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}],
                                  "usage": {"prompt_tokens": usage["prompt_tokens"],
                                            "total_tokens": usage["prompt_tokens"]}})
        return Response.json({
            "id": f"chatcmpl-fake{len(self.served):06d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": "A fine answer."}}],
            "usage": usage,
        })


class ForwardingProxy(FakeHTTPServer):
    """Passes each request on to `target` and its answer back, unless a programmed fault (drop the
    connection, lose the answer after forwarding, answer 503) says otherwise: a load balancer in
    front of the server under test."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target.rstrip("/")

    def handle(self, request: RecordedRequest) -> Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length", "connection")}
        answer = httpx.request(request.method, self.target + request.path, content=request.body, headers=headers,
                               timeout=30)
        kept = {k: v for k, v in answer.headers.items() if k.lower() in ("content-type", "retry-after", "www-authenticate")}
        return Response(answer.status_code, answer.content, kept)
