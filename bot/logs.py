"""Structured JSON logs, one object per line, every line through the process's one redactor."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

from jobs.config.redaction import REDACTOR, Redactor, learn
from jobs.config.settings import Settings


class RedactingJsonFormatter(logging.Formatter):
    """Formats records as JSON. The message goes through the redactor before it is escaped
    into the line, and the finished line again (the redactor knows each secret JSON-escaped)."""

    def __init__(self, redactor: Redactor = REDACTOR) -> None:
        super().__init__()
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": self.redactor.redact(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = self.redactor.redact(self.formatException(record.exc_info))
        for key in ("job", "period", "seconds", "source", "channel", "outbox_id"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        return self.redactor.redact(json.dumps(entry, default=str))


class _DropNoise(logging.Filter):
    """Bolt warns that a token is unused whenever a client is given; ours always is."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


def setup_logging(settings: Settings, stream=None, level: str | None = None) -> None:  # type: ignore[no-untyped-def]
    """Send every logger's records to stderr as redacted JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    learn(settings)
    handler.setFormatter(RedactingJsonFormatter())
    handler.addFilter(_DropNoise())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level or settings.log_level)
    for noisy in ("uvicorn.access", "apscheduler.executors.default", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
