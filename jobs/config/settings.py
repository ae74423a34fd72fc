"""Configuration: secrets from the environment, everything else also from `budget-guard.toml`.

A wrong setting stops start-up with one line naming the key and what was expected
(`ConfigError`). `load_settings()` is the one way in. The sections of the file (prices,
sources, budgets, ...) are the models of `jobs.config.sections`.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from datetime import time
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from db import EMBEDDED_DATABASE_URL
from jobs.config.redaction import SECRET_SETTINGS, learn
from jobs.config.sections import (
    Alias,
    BudgetConfig,
    ClusterRate,
    Hardware,
    ModelFactsOverride,
    Offline,
    OtlpMapping,
    Prepaid,
    PriceOverride,
    Source,
    Throughput,
    channel_id,
)

SECRET_KEYS = SECRET_SETTINGS
DEFAULT_CONFIG_FILE = "budget-guard.toml"


class ConfigError(Exception):
    """A setting is wrong; the message is one line naming the key."""


class Settings(BaseSettings):
    """Everything budget-guard reads at start-up."""

    model_config = SettingsConfigDict(extra="forbid", env_prefix="", case_sensitive=False)
    reads_environment: ClassVar[bool] = True

    # Secrets: environment only.
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    together_api_key: SecretStr | None = None
    ingest_tokens: SecretStr | None = None

    database_url: str = EMBEDDED_DATABASE_URL
    tz: str = "UTC"
    host: str = "0.0.0.0"
    port: int = Field(default=3000, ge=1, le=65535)
    slack_api_url: str | None = None
    together_api_url: str = "https://api.together.xyz/v1"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    max_body_bytes: int = Field(default=5_000_000, ge=1024)

    prices: list[PriceOverride] = []
    aliases: list[Alias] = []
    hardware: list[Hardware] = []
    cluster_rates: list[ClusterRate] = []
    throughput: list[Throughput] = []
    model_facts: list[ModelFactsOverride] = []
    default_gpu: str = "h100"
    sources: list[Source] = []
    budgets: list[BudgetConfig] = []
    admins: Annotated[list[str], NoDecode] = []
    offline: Offline = Offline()

    alert_channel: str | None = None
    digest_channel: str | None = None
    digest_time: time = time(9, 0)
    pull_cron: str = "*/15 * * * *"
    check_cron: str = "*/30 * * * *"
    price_sync_cron: str = "17 3 * * *"
    source_silence_hours: int = Field(default=6, ge=1)
    outbox_interval_seconds: float = Field(default=5.0, gt=0, le=3600)
    outbox_lease_seconds: float = Field(default=120.0, ge=1, le=3600)
    catch_up_seconds: float = Field(default=60.0, gt=0, le=3600)
    job_lease_seconds: float = Field(default=900.0, ge=1, le=86400)
    spike_factor: Decimal = Field(default=Decimal("3"), gt=1)

    # Prepaid runway and guard actions.
    prepaid: Prepaid | None = None
    runway_alert_days: int = Field(default=7, ge=2, le=365)  # alert under this many days, and under 1
    idle_endpoint_hours: int = Field(default=6, ge=1, le=24 * 30)

    # Slack as Slack behaves (issue 11): who hears about what only an operator can fix, what the
    # outbox does with a message that may have landed where it cannot look, how fresh the admin
    # groups are kept.
    ops_channel: str | None = None
    outbox_uncertain: Literal["skip", "repost"] = "skip"
    admin_refresh_seconds: float = Field(default=300.0, ge=10, le=86400)

    # OpenTelemetry, LiteLLM and reconciliation with the provider's bill
    otlp: OtlpMapping = OtlpMapping()
    otlp_max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    reconcile_cron: str = "41 5 * * *"
    reconcile_drift_percent: Decimal = Field(default=Decimal("2"), gt=0, le=100)
    reconcile_min_usd: Decimal = Field(default=Decimal("1"), ge=0)

    @field_validator("admins", mode="before")
    @classmethod
    def _admin_list(cls, value: Any) -> Any:
        """ADMINS=U0123,S0456 in the environment, or a list in the file."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    return json.loads(text)
                except ValueError:
                    raise ValueError('expected user or group IDs like U0123,S0456 or ["U0123"]') from None
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("admins")
    @classmethod
    def _admin_ids(cls, value: list[str]) -> list[str]:
        for admin in value:
            if not re.match(r"^[UWS][A-Z0-9]+$", admin):
                raise ValueError(f"{admin[:40]!r} is not a Slack user (U…) or user group (S…) ID")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("pull_cron", "check_cron", "price_sync_cron", "reconcile_cron")
    @classmethod
    def _cron(cls, value: str, info: ValidationInfo) -> str:
        if value == cls.model_fields[info.field_name].default:  # type: ignore[index]
            return value  # the defaults are valid (tested); parsing them would import APScheduler for every command
        from jobs.config.cron import cron_trigger

        try:
            cron_trigger(value, "UTC")
        except ValueError as exc:
            raise ValueError(f"{value[:60]!r} is not a cron expression like '*/30 * * * *' "
                             f"(minute hour day month weekday): {exc}") from None
        return value

    @field_validator("outbox_uncertain", mode="before")
    @classmethod
    def _lower_policy(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("alert_channel", "digest_channel", "ops_channel")
    @classmethod
    def _channel_setting(cls, value: str | None) -> str | None:
        return channel_id(value)

    @model_validator(mode="after")
    def _readable_ingest_tokens(self) -> "Settings":
        try:
            self.ingest_token_projects()
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self

    @field_validator("tz")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        value = value.lstrip(":")
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Berlin") from None
        return value

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        if not re.match(r"^(sqlite|postgresql(\+psycopg)?)://", value):
            raise ValueError("expected sqlite:///PATH or postgresql+psycopg://USER@HOST/DB")
        parts = database_url_parts(value)  # as the engine will read it; nothing of it is echoed (a password)
        port = parts.get("port") if parts else ""
        if port is not None and not (port.isascii() and port.isdigit() and 0 < int(port) <= 65535):
            raise ValueError("the port is not a number from 1 to 65535; expected postgresql+psycopg://USER@HOST:5432/DB")
        if value.startswith("postgresql://"):
            value = "postgresql+psycopg://" + value[len("postgresql://"):]
        return value

    @model_validator(mode="after")
    def _budgets_have_a_channel(self) -> "Settings":
        for budget in self.budgets:
            if not budget.channel and not self.alert_channel:
                raise ValueError(f"budget {budget.name!r} has no channel and ALERT_CHANNEL is not set")
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> "Settings":
        for label, items in (("budgets", self.budgets), ("sources", self.sources), ("aliases", self.aliases)):
            seen: set[str] = set()
            for item in items:
                if item.name in seen:
                    raise ValueError(f"{label}: the name {item.name!r} is used twice")
                seen.add(item.name)
        return self

    @model_validator(mode="after")
    def _complete_model_facts(self) -> "Settings":
        if self.model_facts:
            from pricing.facts import FactsError, load_model_facts

            try:
                load_model_facts(self.model_facts_overrides())
            except FactsError as exc:
                raise ValueError(f"model_facts: {exc}") from None
        return self

    def model_facts_overrides(self) -> dict[str, dict[str, Any]]:
        """The operator's [[model_facts]] by model, later entries winning field by field."""
        overrides: dict[str, dict[str, Any]] = {}
        for entry in self.model_facts:
            overrides.setdefault(entry.model, {}).update(entry.facts())
        return overrides

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def ingest_token_projects(self) -> dict[str, str]:
        """Map of ingest bearer token to the project it names."""
        raw = self.ingest_tokens.get_secret_value() if self.ingest_tokens else ""
        tokens: dict[str, str] = {}
        for pair in filter(None, (p.strip() for p in raw.split(","))):
            project, sep, token = pair.partition("=")
            if not sep or not project.strip() or not token.strip():
                raise ConfigError("INGEST_TOKENS: expected comma-separated project=token pairs")
            tokens[token.strip()] = project.strip()
        return tokens

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings) if cls.reads_environment else (init_settings,)


class _GivenOnly(Settings):
    """Settings that read nothing but what they are given: no environment, no file."""

    reads_environment: ClassVar[bool] = False


def given_settings(**values: Any) -> Settings:
    """Settings from `values` alone (the demo must not depend on the machine's configuration)."""
    return _GivenOnly(**values)


_DATABASE_URL = re.compile(  # SQLAlchemy's own URL pattern (sqlalchemy.engine.url), without importing it
    r"""(?P<name>[\w\+]+)://
        (?:(?P<username>[^:/]*)(?::(?P<password>[^@]*))?@)?
        (?:(?:\[(?P<ipv6host>[^/\?]+)\]|(?P<ipv4host>[^/:\?]+))?(?::(?P<port>[^/\?]*))?)?
        (?:/(?P<database>[^\?]*))?(?:\?(?P<query>.*))?""",
    re.X,
)


def database_url_parts(url: str) -> dict[str, str | None] | None:
    """A database URL's parts as SQLAlchemy will read them (the password still URL-encoded)."""
    match = _DATABASE_URL.match(url)
    return match.groupdict() if match else None


def config_path() -> Path:
    """Where the TOML configuration is read from."""
    return Path(os.environ.get("BUDGET_GUARD_CONFIG") or DEFAULT_CONFIG_FILE)


def read_config_file(path: Path) -> dict[str, Any]:
    """The TOML file's contents, or {} if it does not exist."""
    if not path.exists():
        if "BUDGET_GUARD_CONFIG" in os.environ:
            raise ConfigError(f"BUDGET_GUARD_CONFIG: {path} does not exist")
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    for key in data:
        if key.lower() in SECRET_KEYS:
            raise ConfigError(f"{path}: {key} is a secret; set it in the environment, not in the file")
    return data


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Settings from the environment over the TOML file; raises ConfigError on any mistake."""
    path = path or config_path()
    data = read_config_file(path)
    # Environment wins over the file: drop file keys that the environment sets.
    env_keys = {k.lower() for k in os.environ}
    file_values = {k: v for k, v in data.items() if k.lower() not in env_keys}
    try:
        settings = Settings(**{**file_values, **overrides})
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, data)) from None
    except SettingsError as exc:  # a list or table setting in the environment that is not JSON
        field = re.search(r'field "(\w+)"', str(exc))
        name = field.group(1).upper() if field else "a setting"
        raise ConfigError(f"{name}: in the environment this must be JSON; or set it in budget-guard.toml") from None
    learn(settings)  # the redactor knows every secret from here on
    return settings


def describe_validation_error(exc: ValidationError, data: dict[str, Any] | None = None) -> str:
    """One line: the first wrong key (with the budget's name where it is one) and what was expected."""
    error = exc.errors()[0]
    loc = list(error["loc"])
    where = ".".join(str(part) for part in loc) or "settings"
    if data and len(loc) >= 2 and loc[0] in ("budgets", "sources") and isinstance(loc[1], int):
        try:
            name = data[loc[0]][loc[1]].get("name")
        except (IndexError, AttributeError, KeyError, TypeError):
            name = None
        if name:
            where = f"{loc[0]} {name!r}" + ("." + ".".join(str(p) for p in loc[2:]) if loc[2:] else "")
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown setting"
    if not loc:
        return message
    key = where.upper() if where.islower() and "." not in where and " " not in where else where
    return f"{key}: {message}"
