"""What the together.ai sources share: the API key, date-times as the spec writes them, tag values."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from jobs.config.sections import Source
from jobs.config.settings import Settings
from jobs.usage.sources import SchemaError, SourceError
from jobs.usage.validation import storable


def together_key(source: Source, settings: Settings) -> str:
    """The source's own key (`api_key_env`), else TOGETHER_API_KEY; SourceError if neither is set."""
    key = source.api_key() or (settings.together_api_key.get_secret_value() if settings.together_api_key else None)
    if not key:
        raise SourceError(f"{source.api_key_env or 'TOGETHER_API_KEY'} is not set")
    return key


def parse_time(value: Any, name: str = "created_at") -> datetime:
    """An ISO 8601 date-time as aware UTC (no offset: UTC); SchemaError if it is not one."""
    if not isinstance(value, str):
        raise SchemaError(f"{name} is not a date-time")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise SchemaError(f"{name} {value[:40]!r} is not ISO 8601") from None
    return moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def optional_time(value: Any, name: str) -> datetime | None:
    """`parse_time`, with null or absent read as None."""
    return None if value is None else parse_time(value, name)


def tag_value(value: str) -> str:
    """A value that can sit in the ledger's "k=v,k2=v2" tags."""
    return storable(value, 512).replace(",", "_").replace("=", "_")
