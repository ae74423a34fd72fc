"""The one redactor: every error text that leaves the process (Slack messages, database rows,
CLI output, logs, /metrics) passes through `redact()`.

It knows every configured secret in each form it takes inside text (raw, JSON-escaped,
URL-encoded, repr-escaped) and the shapes of credentials nobody configured (bearer headers,
Slack, OpenAI and together.ai keys, passwords in URLs, `key=` query parameters). Text a
provider wrote goes through `redact_untrusted()`, which also masks anything key-shaped."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import quote, quote_plus, unquote

if TYPE_CHECKING:
    from jobs.config.settings import Settings

REDACTED = "[redacted]"
MIN_SECRET = 4  # shorter values would garble ordinary text; no real credential is this short
SECRET_SETTINGS = ("slack_bot_token", "slack_signing_secret", "slack_app_token", "together_api_key", "ingest_tokens")
SECRET_ENVIRONMENT = ("TOGETHER_API_KEY",)

# Credentials nobody told us about. `keep` is a prefix left in place (the scheme, the user name).
_SHAPES = re.compile(
    r"(?P<keep1>(?i:\b(?:bearer|basic)\s+))[A-Za-z0-9._~+/=-]{6,}"
    r"|(?P<keep2>://[^/\s:@\"']*:)(?!\*+@)[^/\s@\"']+(?=@)"  # a password shown as *** is already masked
    r"|(?P<keep3>[?&;](?i:api[_-]?key|apikey|key|token|access_token|secret|password|sig)=)[^&\s\"'<>]+"
    r"|\bxox[abposre]-[A-Za-z0-9-]{6,}|\bxapp-[A-Za-z0-9-]{6,}"
    r"|\bsk-[A-Za-z0-9_-]{16,}|\btgp_v1_[A-Za-z0-9_-]{8,}"
)
# In a provider's words: any long run of key characters with a digit and a letter in it.
_KEYLIKE = re.compile(r"(?<![A-Za-z0-9_-])(?=[A-Za-z_-]*[0-9])(?=[0-9_-]*[A-Za-z])[A-Za-z0-9_-]{24,}")


def _shape(match: re.Match[str]) -> str:
    return (match.group("keep1") or match.group("keep2") or match.group("keep3") or "") + REDACTED


def forms(secret: str) -> set[str]:
    """The ways `secret` can appear in text we write: as is, JSON-escaped, URL-encoded, repr'd."""
    return {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        repr(secret)[1:-1],
    }


def secrets_of(settings: "Settings") -> set[str]:
    """Every secret value a Settings holds (ingest tokens one by one, the database password too)."""
    values: set[str] = set()
    for name in SECRET_SETTINGS:
        secret = getattr(settings, name, None)
        if secret is not None:
            raw = secret.get_secret_value()
            values.add(raw)
            if name == "ingest_tokens":
                values.update(pair.partition("=")[2].strip() for pair in raw.split(","))
    from jobs.config.settings import database_url_parts

    password = (database_url_parts(settings.database_url) or {}).get("password")
    if password:
        values |= {password, unquote(password)}
    for source in settings.sources:
        key = source.api_key()
        if key:
            values.add(key)
    return {v for v in values if len(v) >= MIN_SECRET}


class Redactor:
    """Replaces known secrets (in all their forms) and credential shapes with "[redacted]".

    Secrets are learned from settings; keys named by environment variable (a source's
    `api_key_env`) are read again at each use, so a key set after start-up is known too."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._env_names: set[str] = set(SECRET_ENVIRONMENT)
        self._compiled: tuple[frozenset[str], re.Pattern[str] | None] = (frozenset(), None)

    def learn(self, settings: "Settings") -> None:
        """Know every secret in `settings`, and the environment variables its sources read."""
        values = secrets_of(settings)
        with self._lock:
            self._values |= values
            self._env_names |= {s.api_key_env for s in settings.sources if s.api_key_env}

    def add(self, secrets: Iterable[str]) -> None:
        with self._lock:
            self._values |= {s for s in secrets if s and len(s) >= MIN_SECRET}

    def _pattern(self) -> re.Pattern[str] | None:
        with self._lock:
            known = set(self._values)
            names = list(self._env_names)
        for name in names:
            value = os.environ.get(name)
            if value and len(value) >= MIN_SECRET:
                known.add(value)
        key = frozenset(known)
        cached_key, pattern = self._compiled
        if key == cached_key:
            return pattern
        every = sorted({f for secret in key for f in forms(secret) if len(f) >= MIN_SECRET}, key=len, reverse=True)
        pattern = re.compile("|".join(map(re.escape, every))) if every else None
        self._compiled = (key, pattern)
        return pattern

    def redact(self, text: str) -> str:
        """`text` with every known secret and every credential shape replaced."""
        if not text:
            return text
        pattern = self._pattern()
        if pattern is not None:
            text = pattern.sub(REDACTED, text)
        return _SHAPES.sub(_shape, text)

    def redact_untrusted(self, text: str) -> str:
        """Text a provider wrote: as `redact`, and anything key-shaped masked too."""
        return _KEYLIKE.sub(REDACTED, self.redact(text))


REDACTOR = Redactor()
"""The process's redactor: settings teach it (load_settings, Context.open, setup_logging)."""


def redact(text: str) -> str:
    """`text` fit to leave the process."""
    return REDACTOR.redact(text)


def redact_untrusted(text: str) -> str:
    """A provider's words fit to leave the process."""
    return REDACTOR.redact_untrusted(text)


def redact_values(value: Any) -> Any:
    """A JSON-like value (Block Kit blocks, say) with every string in it redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [redact_values(v) for v in value]
    if isinstance(value, dict):
        return {k: redact_values(v) for k, v in value.items()}
    return value


def learn(settings: "Settings") -> None:
    REDACTOR.learn(settings)


def one_line(text: str, limit: int = 500) -> str:
    """Redacted, on one line, at most `limit` characters: an error as a row or a message keeps it."""
    return " ".join(redact(text).split())[:limit]


class RedactedStream:
    """A text stream (stdout, stderr) that redacts each write; everything else is the stream's."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
