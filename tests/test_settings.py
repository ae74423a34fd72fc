"""Configuration: a wrong setting is one line naming the key; secrets only from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli import main
from jobs.config.settings import ConfigError, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "budget-guard.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "toml, expected",
    [
        ('alert_channel = "C1"\n[[budgets]]\nname = "llama-prod"\namount = -5\n', "budgets 'llama-prod'.amount"),
        ('alert_channel = "C1"\n[[budgets]]\nname = "x"\namount = 5\nscope = { team = "a" }\n',
         "budgets 'x'.scope: unknown scope key 'team'"),
        ('[[budgets]]\nname = "x"\namount = 5\n', "budget 'x' has no channel"),
        ('slack_bot_token = "xoxb-1"\n', "is a secret; set it in the environment"),
        ('tz = "Mars/Olympus"\n', "TZ: unknown time zone"),
        ("bogus = 1\n", "BOGUS: unknown setting"),
        ('port = "abc"\n', "PORT:"),
        ("this is not toml", "not valid TOML"),
        ('database_url = "mysql://x"\n', "DATABASE_URL: expected sqlite"),
        ('check_cron = "every half hour"\n', "CHECK_CRON: 'every half hour' is not a cron expression"),
        ('alert_channel = "#general"\n', "ALERT_CHANNEL: '#general' is not a channel ID"),
        ('admins = ["bob"]\n', "ADMINS: 'bob' is not a Slack user (U…) or user group (S…) ID"),
    ],
)
def test_a_wrong_setting_is_one_line_naming_it(tmp_path: Path, toml: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, toml))
    message = str(info.value)
    assert expected in message and "\n" not in message


def test_environment_wins_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, 'tz = "Europe/Berlin"\nport = 4000\n')
    monkeypatch.setenv("PORT", "5000")
    settings = load_settings(path)
    assert settings.port == 5000 and settings.tz == "Europe/Berlin"


def test_ingest_tokens_name_projects(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("INGEST_TOKENS", "search=tok_a, support=tok_b")
    assert load_settings(tmp_path / "none.toml").ingest_token_projects() == {"tok_a": "search", "tok_b": "support"}


def test_serve_with_a_bad_config_stops_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("BUDGET_GUARD_CONFIG", str(write(tmp_path, 'alert_channel = "C1"\n[[budgets]]\nname = "b1"\namount = "lots"\n')))
    assert main(["serve", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("budget-guard: configuration: budgets 'b1'.amount") and "\n" not in err


def test_serve_refuses_an_out_of_date_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'new.db'}")
    assert main(["serve", "--port", "0"]) == 2
    assert "run `budget-guard db upgrade`" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("ADMINS", "U0ADMIN,S0GROUP", None),
        ("ADMINS", '["U0ADMIN"]', None),
        ("LOG_LEVEL", "info", None),
        ("CHECK_CRON", "'*/30 * * * *'", "CHECK_CRON: \"'*/30 * * * *'\" is not a cron expression"),
        ("INGEST_TOKENS", "garbage", "INGEST_TOKENS: expected comma-separated project=token pairs"),
        ("PRICES", "not json", "PRICES: in the environment this must be JSON"),
    ],
)
def test_environment_values_are_read_or_refused_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            name: str, value: str, expected: str | None) -> None:
    monkeypatch.setenv(name, value)
    if expected is None:
        settings = load_settings(tmp_path / "absent.toml")
        read = {"ADMINS": settings.admins, "LOG_LEVEL": settings.log_level}[name]
        assert read == {"U0ADMIN,S0GROUP": ["U0ADMIN", "S0GROUP"], '["U0ADMIN"]': ["U0ADMIN"], "info": "INFO"}[value]
        return
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path / "absent.toml")
    assert expected in str(info.value) and "\n" not in str(info.value)
