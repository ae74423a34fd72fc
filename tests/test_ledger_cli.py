"""The ledger's commands as an operator runs them: db upgrade, import, usage, reprice, pull."""

from __future__ import annotations

import argparse
import importlib
import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from tests.fakes.openai_usage import FakeOpenAIUsage, UsageEvent
from tests.test_ledger_ingest import MAESTRO, NOW, response

NEW_MODEL = "acme/brand-new-model"
LEDGER_COMMANDS = ("db", "pull", "usage", "import_", "reprice")


def main(argv: list[str]) -> int:
    """`budget-guard ARGS` with the ledger's commands only (so other commands' state cannot interfere)."""
    parser = argparse.ArgumentParser(prog="budget-guard")
    subparsers = parser.add_subparsers(dest="command")
    for name in LEDGER_COMMANDS:
        importlib.import_module(f"bot.commands.{name}").register(subparsers)
    args = parser.parse_args(argv)
    return int(args.func(args))


@pytest.fixture
def db_env(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATABASE_URL", database_url)
    return database_url


def usage_file(tmp_path: Path) -> Path:
    path = tmp_path / "usage.jsonl"
    records = [response("a"), response("b", prompt=3000, mode="batch"), response("c", NEW_MODEL, prompt=2_000_000, completion=0)]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def usage_json(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, object]]:
    capsys.readouterr()
    assert main(["usage", "--since", "2026-11-01", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_db_upgrade_creates_the_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'fresh.db'}")
    assert main(["db", "check"]) == 1
    assert "budget-guard db upgrade" in capsys.readouterr().err
    assert main(["db", "upgrade"]) == 0
    assert main(["db", "check"]) == 0


def test_import_then_usage_shows_costs_and_unpriced_tokens(
    db_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["import", str(usage_file(tmp_path)), "--project", "web"]) == 0
    assert "3 record(s) imported" in capsys.readouterr().out

    by_model = {g["key"]: g for g in usage_json(capsys)}
    assert by_model[MAESTRO] == {
        "by": "model", "key": MAESTRO, "input_tokens": 7000, "cached_input_tokens": 0, "output_tokens": 2000,
        "requests": 2, "uptime_minutes": 0, "cost": "0.0099", "unpriced_tokens": 0, "unpriced_minutes": 0,
    }
    assert by_model[NEW_MODEL]["cost"] is None and by_model[NEW_MODEL]["unpriced_tokens"] == 2_000_000
    assert {g["key"]: g["cost"] for g in usage_json(capsys, "--by", "mode")} == {"serverless": "0.0069", "batch": "0.003"}

    assert main(["usage", "--since", "2026-11-01", "--by", "project"]) == 0
    table = capsys.readouterr().out
    assert "web" in table and "$0.0099" in table and "2,000,000" in table and "no known price" in table
    assert main(["usage", "--since", "2026-11-04"]) == 0
    assert "no usage recorded" in capsys.readouterr().out


def test_import_refuses_a_bad_file_naming_lines(db_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(response("a")) + "\n" + json.dumps(response("b", prompt=-2)) + "\nnope\n")
    assert main(["import", str(path)]) == 2
    err = capsys.readouterr().err
    assert "refused, nothing applied: 2 bad line(s)" in err
    assert "line 2: prompt_tokens is negative (-2)" in err and "line 3: not valid JSON" in err
    assert usage_json(capsys) == []

    assert main(["import", str(path), "--skip-bad", str(tmp_path / "rejects.jsonl")]) == 0
    assert "2 bad line(s) written to" in capsys.readouterr().out
    assert len((tmp_path / "rejects.jsonl").read_text().splitlines()) == 2


def test_reprice_recosts_history_after_a_price_correction(
    db_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["import", str(usage_file(tmp_path)), "--project", "web"]) == 0
    (tmp_path / "budget-guard.toml").write_text(
        f'[[prices]]\nmodel = "{NEW_MODEL}"\ninput = "0.50"\noutput = "1.00"\n'
        f'[[prices]]\nmodel = "{MAESTRO}"\ninput = "1.00"\noutput = "3.30"\n'
    )
    capsys.readouterr()
    assert main(["reprice", "--since", "2026-11-01", "--dry-run"]) == 0
    assert "would change" in capsys.readouterr().out
    assert {g["key"]: g["cost"] for g in usage_json(capsys)}[NEW_MODEL] is None  # a dry run changes nothing

    assert main(["reprice", "--since", "2026-11-01"]) == 0
    out = capsys.readouterr().out
    assert "3 bucket row(s) since 2026-11-01 checked, 3 changed" in out
    assert "$0.0099 -> $1.01" in out and "1 row(s) newly priced" in out
    costs = {g["key"]: Decimal(str(g["cost"])) for g in usage_json(capsys)}
    # 4,000 in at $1.00 + 1,000 out at $3.30, and the same half price on batch for 3,000 + 1,000; 2M at $0.50.
    assert costs == {NEW_MODEL: Decimal("1"), MAESTRO: Decimal("0.01045")}


def test_usage_rejects_a_bad_date_in_one_line(db_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["usage", "--since", "last week"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "YYYY-MM-DD" in err


def test_pull_command_pulls_the_configured_sources(
    db_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    events = [UsageEvent(NOW - timedelta(hours=3), MAESTRO, input_tokens=4000, output_tokens=1000, project_id="web")]
    monkeypatch.setenv("OPENAI_ADMIN_KEY", "sk-admin")
    with FakeOpenAIUsage(admin_key="sk-admin", events=events) as api:
        (tmp_path / "budget-guard.toml").write_text(
            f'[[sources]]\nname = "openai"\nkind = "openai_usage"\nbase_url = "{api.url}"\n'
            f'api_key_env = "OPENAI_ADMIN_KEY"\nstart = {(NOW - timedelta(days=1)).date().isoformat()}\n'
        )
        assert main(["pull"]) == 0
        assert main(["pull", "openai"]) == 0
        assert main(["pull", "nope"]) == 2
    captured = capsys.readouterr()
    assert captured.out.count("openai: ok") == 2 and "no source named 'nope'" in captured.err
    with_events = usage_json(capsys, "--since", (NOW - timedelta(days=1)).date().isoformat())
    assert [(g["key"], g["input_tokens"], g["cost"]) for g in with_events] == [(MAESTRO, 4000, "0.0069")]
