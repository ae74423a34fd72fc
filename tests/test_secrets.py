"""No secret leaves the process: a provider that echoes the key it was sent, followed through
every way out (CLI output, log lines, database rows, Slack calls, /metrics)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from urllib.parse import quote, quote_plus

import httpx
import pytest
from sqlalchemy import select

from bot.cli import main
from bot.logs import setup_logging
from bot.server import create_server
from bot.views.alerts import alert_message
from db.models import Base, SourceState
from db.rollups import DailyUsage  # noqa: F401 - its tables are in the metadata too
from jobs.budgets.check import check_budgets
from jobs.config.context import Context
from jobs.config.redaction import REDACTED, Redactor, forms, redact
from jobs.config.settings import Settings, load_settings
from jobs.runtime.outbox import send_pending
from jobs.runtime.scheduler import outbox_client
from jobs.usage.pull import pull_sources
from jobs.usage.sources import RetryPolicy
from tests.fakes.openai_usage import FakeOpenAIUsage
from tests.fakes.slack_api import FakeSlack
from tests.harness import BOT_TOKEN, ServerThread

SECRET = 'TOGKEY_9f8e7d6c5b4a"q\\b/s+p=e%x'  # a quote and a backslash: JSON escapes them
CORE = "9f8e7d6c5b4a"  # any piece of the key showing is a leak
NO_RETRY = RetryPolicy(attempts=1, base_delay=0, max_delay=0, max_total_wait=0, sleep=lambda seconds: None)


def leaks(text: str) -> list[str]:
    """The forms of the secret found in `text` (none, we hope)."""
    found = [f for f in forms(SECRET) | {quote_plus(SECRET), CORE} if f in text]
    return found


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)


def test_an_echoed_provider_key_reaches_no_output_row_log_slack_call_or_metrics(
    database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path, capsys, logs: io.StringIO  # type: ignore[no-untyped-def]
) -> None:
    with FakeOpenAIUsage(admin_key="the-right-key", echo_key=True) as provider, FakeSlack(token=BOT_TOKEN) as slack:
        (tmp_path / "budget-guard.toml").write_text(
            'alert_channel = "C0ALERTS"\nsource_silence_hours = 1\n'
            f'[[sources]]\nname = "openai"\nkind = "openai_usage"\nbase_url = "{provider.url}"\n'
            'api_key_env = "PROVIDER_KEY"\ntimeout_seconds = 5\n'
        )
        for name, value in {"DATABASE_URL": database_url, "SLACK_BOT_TOKEN": BOT_TOKEN,
                            "SLACK_API_URL": slack.url, "PROVIDER_KEY": SECRET}.items():
            monkeypatch.setenv(name, value)
        settings = load_settings()
        setup_logging(settings, stream=logs)

        # The CLI prints the pull's failure (stdout) and logs it (stderr).
        assert main(["pull"]) == 1
        printed = capsys.readouterr()
        assert "openai: FAILED" in printed.out and "HTTP 401" in printed.out

        # The scheduler's way: pull fails, the source alert goes to Slack two hours later.
        context = Context.open(settings)
        start = datetime.now(timezone.utc)
        pull_sources(context, now=start, retry=NO_RETRY)
        drafts = check_budgets(context, now=start + timedelta(hours=2), render=alert_message)
        send_pending(context.sessions, outbox_client(context), now=start + timedelta(hours=2))
        logging.getLogger("budget_guard.test").error("provider answered %s", json.dumps({"detail": SECRET}))
        with ServerThread(create_server(context, None)) as server:
            metrics = httpx.get(f"{server.url}/metrics").text

        with context.sessions() as session:
            rows = {table.name: [tuple(r) for r in session.execute(select(table))] for table in Base.metadata.sorted_tables}
            last_error = session.get(SourceState, "openai").last_error
        context.close()

    assert [d.kind for d in drafts] == ["source"] and len(slack.calls_to("chat.postMessage")) == 1
    # Still useful: what failed and why, without the key.
    assert "HTTP 401" in last_error and "invalid_api_key" in last_error and REDACTED in last_error
    slack_traffic = "\n".join(r.body.decode("utf-8", "replace") + json.dumps(r.headers) for r in slack.requests)
    assert "Last error" in slack_traffic
    outputs = {
        "stdout": printed.out, "stderr": printed.err, "log lines": logs.getvalue(), "rows": repr(rows),
        "Slack calls": slack_traffic, "/metrics": metrics,
    }
    assert logs.getvalue().count("\n") >= 2 and all(json.loads(line) for line in logs.getvalue().splitlines())
    assert {where: leaks(text) for where, text in outputs.items()} == {where: [] for where in outputs}
    # The provider was sent the key (and echoed it): the checks above would have seen a leak.
    assert any((r.header("Authorization") or "") == f"Bearer {SECRET}" for r in provider.requests)


def test_the_redactor_knows_each_form_of_a_secret_and_shapes_it_was_not_told() -> None:
    redactor = Redactor()
    redactor.learn(Settings(ingest_tokens='web=tok_"weird\\one', slack_bot_token="xoxb-1-2-3",
                            database_url="postgresql+psycopg://app:hunter2pw@db:5432/ledger"))
    token = 'tok_"weird\\one'
    for text in (token, json.dumps({"t": token}), quote(token, safe=""), quote_plus(token), repr(token)):
        assert "weird" not in redactor.redact(f"before {text} after"), text
    assert "hunter2pw" not in redactor.redact("could not connect to postgresql://app:hunter2pw@db/ledger")
    unknown = redactor.redact("Authorization: Bearer abcdef123456 and xoxp-999-888 and sk-proj-abcdefghijklmnop1234 "
                              "at https://api.example/v1?api_key=s3cr3tvalue&x=1")
    assert all(s not in unknown for s in ("abcdef123456", "xoxp-999", "abcdefghijklmnop1234", "s3cr3tvalue"))
    assert "Bearer [redacted]" in unknown and "x=1" in unknown
    assert redact("3,000 in + 1,000 out at $0.90/1M: $0.0060") == "3,000 in + 1,000 out at $0.90/1M: $0.0060"


def test_a_provider_reason_is_short_and_never_an_echoed_key_even_one_we_were_not_told() -> None:
    """The reason every source and the Stop endpoint button pass on (jobs.usage.sources.http.provider_reason)."""
    from jobs.usage.sources.http import provider_reason

    for key in ("tgp_v1_abcdefghijklmnop1234567890", "9f1c2b3a4d5e6f708192a3b4c5d6e7f8"):
        body = json.dumps({"error": {"code": "invalid_api_key", "type": "invalid_request_error",
                                     "message": f"Invalid API key provided: {key}. See the docs. " + "x" * 500}})
        assert provider_reason(body.encode()) == " (invalid_api_key: Invalid API key provided: [redacted].)"
    assert provider_reason(b"<html>" + SECRET.encode() + b"</html>") == ""
