"""`--now TIME` on usage, forecast, advise and digest: a ledger seen as of another day (the
demo's, or last month's), with the same numbers the commands give on that day."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bot.cli import main

AS_OF = datetime(2025, 3, 20, 12, 0, tzinfo=timezone.utc)  # long before the real now
MAESTRO = "arcee-ai/maestro-reasoning"  # $0.90 in / $3.30 out per 1M


@pytest.fixture
def march_ledger(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two weeks of March 2025 usage, 4,000 + 1,000 tokens a night ($0.0069 each)."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    records = tmp_path / "march.jsonl"
    records.write_text("".join(
        json.dumps({"id": f"m{day}", "model": MAESTRO, "feature": "nightly",
                    "created": int((AS_OF - timedelta(days=day, hours=10)).timestamp()),
                    "usage": {"prompt_tokens": 4000, "completion_tokens": 1000}}) + "\n"
        for day in range(1, 15)))
    assert main(["import", str(records)]) == 0


def out(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> str:
    capsys.readouterr()
    assert main(list(argv)) == code
    captured = capsys.readouterr()
    return captured.out + captured.err


def test_usage_forecast_advise_and_digest_as_of_another_day(march_ledger: None, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    now = "--now=2025-03-20T12:00Z"
    assert "no usage recorded in this period" in out(capsys, "usage")  # as of today: nothing this month
    [group] = json.loads(out(capsys, "usage", "--json", now))
    assert (group["key"], group["requests"], group["cost"]) == (MAESTRO, 14, "0.0966")  # 14 x $0.0069
    assert "2025-03-01 00:00 to 2025-03-20 12:00 (UTC)" in out(capsys, "usage", now)

    forecast = json.loads(out(capsys, "forecast", "--json", now))
    assert forecast["month"] == "2025-03" and forecast["as_of"] == AS_OF.isoformat()
    assert forecast["total"]["month_to_date"] == "0.0966"

    assert "up to 2025-03-19" in out(capsys, "advise", now)

    digest = out(capsys, "digest", "--dry-run", "--out", str(tmp_path / "out"), now)
    assert "Spend digest · Thu, Mar 20, 2025" in digest and "$0.0069" in digest  # yesterday's night
    refused = out(capsys, "digest", now, code=2)
    assert "--now needs --dry-run" in refused


def test_a_bad_now_is_one_line() -> None:
    with pytest.raises(SystemExit) as exited:
        main(["usage", "--now", "yesterday"])
    assert exited.value.code == 2
