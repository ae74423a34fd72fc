"""Running the real server in a test: uvicorn on a free loopback port, and Slack-signed requests."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from typing import Any
from urllib.parse import urlencode

import httpx
import uvicorn

SIGNING_SECRET = "test-signing-secret-0123456789abcdef"
BOT_TOKEN = "xoxb-test-0000-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """An ASGI app served by uvicorn in a background thread, for the length of a `with` block."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None,
                                                    access_log=False, lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def signed_headers(body: str, secret: str = SIGNING_SECRET, timestamp: int | None = None) -> dict[str, str]:
    """Slack's v0 request signature over `body`."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/x-www-form-urlencoded",
    }


def slash_command_body(text: str, command: str = "/costquote", *, user_id: str = "U0TEST",
                       channel_id: str = "C0TEST", response_url: str = "http://127.0.0.1:9/response") -> str:
    return urlencode({
        "token": "legacy-unused",
        "team_id": "T0TEST",
        "team_domain": "test",
        "channel_id": channel_id,
        "channel_name": "general",
        "user_id": user_id,
        "user_name": "tester",
        "command": command,
        "text": text,
        "api_app_id": "A0TEST",
        "response_url": response_url,
        "trigger_id": "1.2.3",
    })


def post_slash_command(base_url: str, text: str, command: str = "/costquote", **kwargs: Any) -> httpx.Response:
    body = slash_command_body(text, command, **kwargs)
    return httpx.post(f"{base_url}/slack/events", content=body, headers=signed_headers(body), timeout=10)


def interaction_body(payload: dict[str, Any]) -> str:
    return urlencode({"payload": json.dumps(payload)})


def post_interaction(base_url: str, payload: dict[str, Any], secret: str = SIGNING_SECRET) -> httpx.Response:
    body = interaction_body(payload)
    return httpx.post(f"{base_url}/slack/events", content=body, headers=signed_headers(body, secret), timeout=10)
