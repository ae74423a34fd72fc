"""`serve` in production: start-up checks in one line each, JSON logs without secrets, health,
metrics, and a clean stop on SIGTERM."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from db.schema import upgrade
from tests.fakes.slack_api import FakeSlack
from tests.harness import BOT_TOKEN, SIGNING_SECRET, post_slash_command
from tests.processes import REPO, ServeProcess, wait_until

INGEST_SECRET = "tok_very_secret_ingest_value"


def base_env(tmp_path: Path, slack: FakeSlack) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    upgrade(url)
    return {"DATABASE_URL": url, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.url, "INGEST_TOKENS": f"search={INGEST_SECRET}", "LOG_LEVEL": "DEBUG"}


def serve_once(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot.cli", "serve", "--port", "0"], cwd=cwd, capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), **env})


def test_a_rejected_slack_token_is_one_clear_line(tmp_path: Path, slack: FakeSlack) -> None:
    slack.invalid_token = "invalid_auth"
    result = serve_once(base_env(tmp_path, slack), tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ["budget-guard: SLACK_BOT_TOKEN: Slack did not accept it (invalid_auth)"]
    assert BOT_TOKEN not in result.stderr + result.stdout


@pytest.mark.parametrize(("change", "line"), [
    ({"SLACK_SIGNING_SECRET": None},
     "budget-guard: SLACK_SIGNING_SECRET: not set; it verifies Slack's requests over HTTP"),
    ({"SLACK_BOT_TOKEN": None, "SLACK_APP_TOKEN": "xapp-1-test"},
     "budget-guard: SLACK_BOT_TOKEN: not set, but SLACK_APP_TOKEN is; Slack needs both"),
    ({"SLACK_SIGNING_SECRET": None, "SLACK_APP_TOKEN": "xapp-1-refused"},
     "budget-guard: SLACK_APP_TOKEN: Slack refused the Socket Mode connection (invalid_auth)"),
])
def test_slack_settings_that_cannot_work_are_one_clear_line(tmp_path: Path, slack: FakeSlack,
                                                            change: dict[str, str | None], line: str) -> None:
    env = {k: v for k, v in {**base_env(tmp_path, slack), **change}.items() if v is not None}
    result = serve_once(env, tmp_path)
    assert result.returncode == 2
    [only] = result.stderr.strip().splitlines()
    assert only.startswith(line), only
    assert BOT_TOKEN not in result.stderr + result.stdout and "xapp-1" not in result.stderr


def test_an_unreachable_database_is_one_clear_line(tmp_path: Path, slack: FakeSlack) -> None:
    env = {**base_env(tmp_path, slack), "DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"}
    result = serve_once(env, tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("budget-guard: database: cannot connect (OperationalError")


def test_serve_logs_json_without_secrets_and_stops_cleanly(tmp_path: Path, slack: FakeSlack) -> None:
    env = base_env(tmp_path, slack)
    with ServeProcess(env, tmp_path) as serve:
        assert httpx.get(f"{serve.url}/healthz").json() == {"status": "ok", "database": "ok", "slack": "ok"}
        assert post_slash_command(serve.url, "maestro 3k/1k x 2M/mo").status_code == 200
        record = {"id": "r1", "created": 1795000000, "model": "arcee-ai/maestro-reasoning",
                  "usage": {"prompt_tokens": 10, "completion_tokens": 5}}
        assert httpx.post(f"{serve.url}/v1/usage", json=record,
                          headers={"Authorization": f"Bearer {INGEST_SECRET}"}).status_code == 200
        httpx.post(f"{serve.url}/v1/usage", json=record, headers={"Authorization": "Bearer wrong"})
        metrics = httpx.get(f"{serve.url}/metrics").text
        assert 'budget_guard_request_seconds_count{endpoint="quote"} 1' in metrics
        assert 'budget_guard_requests_total{endpoint="usage",status="401"} 1' in metrics
        assert serve.stop() == 0
    log = serve.log()
    entries = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert entries and all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    for secret in (BOT_TOKEN, SIGNING_SECRET, INGEST_SECRET):
        assert secret not in log
    assert any(e["message"] == "stopped" for e in entries)


def test_serve_with_slack_unreachable_ingests_and_answers_health_then_reaches_slack(tmp_path: Path,
                                                                                   slack: FakeSlack) -> None:
    slack.set_down(status=None)  # Slack refuses connections: no route to it at start-up
    push = {"Authorization": f"Bearer {INGEST_SECRET}"}
    record = {"id": "r1", "created": int(time.time()) - 60, "model": "maestro",
              "usage": {"prompt_tokens": 3000, "completion_tokens": 1000}}
    with ServeProcess(base_env(tmp_path, slack), tmp_path) as serve:
        health = httpx.get(f"{serve.url}/healthz")
        assert health.status_code == 200  # alive and ingesting: nothing a restart would fix
        assert {k: v for k, v in health.json().items() if k != "slack_detail"} == {
            "status": "degraded", "database": "ok", "slack": "unreachable"}
        assert health.json()["slack_detail"].startswith(f"SLACK_API_URL: cannot reach Slack at {slack.url}")
        assert httpx.post(f"{serve.url}/v1/usage", json=record, headers=push).json() == {"accepted": 1, "duplicates": 0}
        assert "budget_guard_slack_up 0" in httpx.get(f"{serve.url}/metrics").text
        refused = post_slash_command(serve.url, "maestro 3k/1k")
        assert refused.status_code == 503 and refused.json()["slack"] == "unreachable"

        slack.set_down(False)  # Slack is back: the background retry gets there on its own
        assert wait_until(lambda: httpx.get(f"{serve.url}/healthz").json()["slack"] == "ok", timeout=30)
        assert httpx.get(f"{serve.url}/healthz").json() == {"status": "ok", "database": "ok", "slack": "ok"}
        assert post_slash_command(serve.url, "maestro 3k/1k").status_code == 200
        assert "budget_guard_slack_up 1" in httpx.get(f"{serve.url}/metrics").text
        assert serve.stop() == 0
    messages = [json.loads(line)["message"] for line in serve.log().splitlines() if line.strip()]
    assert sum("trying Slack again in the background" in m for m in messages) == 1
    assert any(m.startswith("reached Slack after") for m in messages)
    assert BOT_TOKEN not in serve.log()
