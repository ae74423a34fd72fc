"""The command line starts fast because it imports what a command needs when it runs: `--help`
and `quote` bring no database, Slack or HTTP libraries; a quote reads genai-prices' rates
from the cache after the first run. A command module that cannot be imported stops the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import bot.cli
from bot.cli import main
from pricing.base_prices import BaseRate, base_rates, read_genai_prices
from tests.processes import REPO

HEAVY = ("sqlalchemy", "alembic", "slack_bolt", "slack_sdk", "starlette", "uvicorn", "httpx", "apscheduler",
         "matplotlib", "psycopg")


def imported_by(args: list[str], cache: Path, cwd: Path) -> set[str]:
    """Which top-level packages a fresh `budget-guard ARGS` process had imported when it ended."""
    script = ("import io, json, sys, contextlib\nfrom bot.cli import main\n"
              "with contextlib.redirect_stdout(io.StringIO()):\n"
              "    try:\n        main(sys.argv[1:])\n    except SystemExit:\n        pass\n"
              "print(json.dumps(sorted({name.partition('.')[0] for name in sys.modules})))")
    done = subprocess.run([sys.executable, "-c", script, *args], cwd=cwd, capture_output=True, text=True, check=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(cache)})
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_help_and_quote_import_no_database_slack_or_http_library(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert not set(HEAVY) & imported_by(["--help"], cache, tmp_path)
    assert not (cache / "budget-guard").exists()  # --help does not even read prices

    first = imported_by(["quote", "maestro 3k/1k"], cache, tmp_path)  # reads genai-prices, which brings httpx
    assert "genai_prices" in first and len(list((cache / "budget-guard").glob("genai-prices-*.json"))) == 1
    again = imported_by(["quote", "maestro 3k/1k"], cache, tmp_path)
    assert not (set(HEAVY) | {"genai_prices"}) & again  # its rates come from the cache now


def test_the_cached_rates_are_the_package_rates_and_a_damaged_cache_is_read_again(tmp_path: Path) -> None:
    fresh = list(read_genai_prices())
    assert base_rates(tmp_path) == fresh and fresh and all(isinstance(r, BaseRate) for r in fresh)
    [cached] = tmp_path.glob("genai-prices-*.json")
    assert base_rates(tmp_path) == fresh  # now from the file
    cached.write_text("{not json")
    assert base_rates(tmp_path) == fresh
    assert json.loads(cached.read_text())[0][0] == fresh[0].provider  # rewritten


def test_a_command_module_that_fails_to_import_stops_the_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bot.cli, "COMMAND_MODULES", (*bot.cli.COMMAND_MODULES, "no_such_command"))
    with pytest.raises(ModuleNotFoundError, match="bot.commands.no_such_command"):
        main(["--help"])


def test_a_command_module_that_fails_to_import_is_said_plainly_and_exits_non_zero(tmp_path: Path) -> None:
    script = ("import sys\nimport bot.cli\nbot.cli.COMMAND_MODULES += ('no_such_command',)\n"
              "sys.exit(bot.cli.main(['--help']))")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(tmp_path)})
    assert done.returncode == 1 and done.stdout == ""  # no help for a partial command line
    assert done.stderr.startswith("budget-guard: the command module bot.commands.no_such_command does not import "
                                  "(ModuleNotFoundError: No module named 'bot.commands.no_such_command')")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"budget-guard {version('budget-guard')}\n"


def test_parser_choices_copied_to_keep_start_up_fast_match_their_source() -> None:
    from bot.commands import forecast, import_, usage
    from db.totals import GROUPS as LEDGER_GROUPS
    from jobs.forecast.month_end import GROUPS
    from jobs.usage.imports import CSV_FIELDS

    assert forecast.GROUPS == GROUPS and import_.CSV_FIELDS == CSV_FIELDS and usage.GROUP_CHOICES == LEDGER_GROUPS


def test_the_default_crons_that_start_up_does_not_parse_are_valid() -> None:
    from apscheduler.triggers.cron import CronTrigger

    from jobs.config.settings import Settings

    for name in ("pull_cron", "check_cron", "price_sync_cron", "reconcile_cron"):
        CronTrigger.from_crontab(Settings.model_fields[name].default, timezone="UTC")
