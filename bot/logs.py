"""Structured JSON logs, one object per line, with every configured secret redacted."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime, timezone

from jobs.settings import Settings

# Shapes of secrets we never want in a log even when we did not configure them.
SECRET_SHAPES = re.compile(r"xox[abposr]-[A-Za-z0-9-]+|xapp-[A-Za-z0-9-]+|(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}")


class RedactingJsonFormatter(logging.Formatter):
    """Formats records as JSON and replaces known secrets with "[redacted]"."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        return SECRET_SHAPES.sub("[redacted]", text)

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        for key in ("job", "period", "seconds", "source", "channel", "outbox_id"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        return self.redact(json.dumps(entry, default=str))


def configured_secrets(settings: Settings) -> list[str]:
    """Every secret value this process knows, so none can reach a log line."""
    values = []
    for name in ("slack_bot_token", "slack_signing_secret", "slack_app_token", "together_api_key", "ingest_tokens"):
        secret = getattr(settings, name)
        if secret is not None:
            raw = secret.get_secret_value()
            values.append(raw)
            if name == "ingest_tokens":
                values.extend(pair.partition("=")[2].strip() for pair in raw.split(","))
    for source in settings.sources:
        key = source.api_key()
        if key:
            values.append(key)
    return values


class _DropNoise(logging.Filter):
    """Bolt warns that a token is unused whenever a client is given; ours always is."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


def setup_logging(settings: Settings, stream=None, level: str | None = None) -> None:  # type: ignore[no-untyped-def]
    """Send every logger's records to stderr as redacted JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(RedactingJsonFormatter(configured_secrets(settings)))
    handler.addFilter(_DropNoise())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level or settings.log_level)
    for noisy in ("uvicorn.access", "apscheduler.executors.default", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
