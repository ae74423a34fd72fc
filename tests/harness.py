"""Running the real server in a test: uvicorn on a free loopback port, and Slack-signed requests."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import socket
import threading
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import httpx
import uvicorn

from jobs.config.settings import Settings

SIGNING_SECRET = "test-signing-secret-0123456789abcdef"
BOT_TOKEN = "xoxb-test-0000-token"


def slack_settings(database_url: str, slack: Any, **values: Any) -> Settings:
    """Settings for a bot on `database_url` that talks to the fake `slack` (a FakeSlack), plus `values`."""
    return Settings(database_url=database_url, slack_bot_token=BOT_TOKEN, slack_signing_secret=SIGNING_SECRET,
                    slack_api_url=slack.url, **values)


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


_counter = itertools.count(1)


def trigger_id() -> str:
    """A fresh trigger_id shaped like Slack's ("13345224609.738474920.8088930838d88f008e0"): one per
    interaction, which is how a repeat of the same delivery is told apart from a new click."""
    return f"{int(time.time())}{next(_counter):04d}.738474920.{uuid.uuid4().hex[:20]}"


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
        "trigger_id": trigger_id(),
        "is_enterprise_install": "false",
    })


def post_slash_command(base_url: str, text: str, command: str = "/costquote", **kwargs: Any) -> httpx.Response:
    body = slash_command_body(text, command, **kwargs)
    return httpx.post(f"{base_url}/slack/events", content=body, headers=signed_headers(body), timeout=10)


def block_actions_payload(message: dict[str, Any], action_id: str, value: str, *, response_url: str,
                          user: str = "U0LEAD", block_id: str = "alert_actions") -> dict[str, Any]:
    """A button click on `message` (as the fake Slack stores it, with its "channel"), shaped as in
    Slack's block_actions reference and bolt-python's test fixtures."""
    channel = message["channel"]
    action_ts = f"{time.time():.6f}"
    return {
        "type": "block_actions",
        "user": {"id": user, "username": "lead", "name": "lead", "team_id": "T0TEST"},
        "api_app_id": "A0TEST",
        "token": "verification_token",
        "container": {"type": "message", "message_ts": message["ts"], "channel_id": channel, "is_ephemeral": False},
        "trigger_id": trigger_id(),
        "team": {"id": "T0TEST", "domain": "test"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": "alerts"},
        "message": {k: v for k, v in message.items() if k != "channel"},
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [{"action_id": action_id, "block_id": block_id, "value": value, "type": "button",
                     "text": {"type": "plain_text", "text": action_id, "emoji": True}, "action_ts": action_ts}],
    }


def event_callback_body(event: dict[str, Any], *, event_id: str | None = None) -> str:
    """An Events API envelope around `event`, as Slack sends it."""
    return json.dumps({
        "token": "verification_token", "team_id": "T0TEST", "context_team_id": "T0TEST", "api_app_id": "A0TEST",
        "event": event, "type": "event_callback", "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
        "event_time": int(time.time()), "event_context": f"4-{uuid.uuid4().hex}",
        "authorizations": [{"enterprise_id": None, "team_id": "T0TEST", "user_id": "U0FAKEBOT1", "is_bot": True,
                            "is_enterprise_install": False}],
        "is_ext_shared_channel": False,
    })


def post_event(base_url: str, body: str, *, retry_num: int | None = None, retry_reason: str = "http_timeout",
               secret: str = SIGNING_SECRET) -> httpx.Response:
    """POST an Events API body, signed; `retry_num` adds Slack's retry headers."""
    headers = {**signed_headers(body, secret), "Content-Type": "application/json"}
    if retry_num is not None:
        headers.update({"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": retry_reason})
    return httpx.post(f"{base_url}/slack/events", content=body, headers=headers, timeout=10)


def interaction_body(payload: dict[str, Any]) -> str:
    return urlencode({"payload": json.dumps(payload)})


def post_interaction(base_url: str, payload: dict[str, Any], secret: str = SIGNING_SECRET) -> httpx.Response:
    body = interaction_body(payload)
    return httpx.post(f"{base_url}/slack/events", content=body, headers=signed_headers(body, secret), timeout=10)
