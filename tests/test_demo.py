"""`budget-guard demo` in a clean folder: the whole bot's output, no Slack, no network, no config."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from jobs.usage.demo import simulated_now
from tests.processes import REPO


def run_demo(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "bot.cli", "demo", "--dir", str(tmp_path / "demo"), *extra],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path)})
    return result, time.monotonic() - started


def forecast_share(out: str, budget: str) -> Decimal:
    """The digest's forecast for `budget` as a percentage of it."""
    found = re.search(rf"\*{budget}\* .*?\n`[^`]*` forecast \$[\d,.]+ \(([\d.]+)%\)", out)
    assert found, f"no forecast line for {budget}"
    return Decimal(found.group(1))


def test_demo_runs_in_a_clean_directory(tmp_path: Path) -> None:
    result, elapsed = run_demo(tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "[threshold] Budget search-chat: 90% used" in out  # an actual alert
    assert "[forecast] Budget support will be exceeded" in out  # a forecast alert
    assert "/costquote compare" in out and "cheapest:" in out
    saving = re.search(r"nightly-summaries.*?saves \$([\d,]+\.\d\d)/month", out, re.S)
    assert saving and Decimal(saving.group(1).replace(",", "")) > 0  # a batch suggestion with a saving
    assert "Spend digest" in out and "Forecast month-end" in out and "Move to batch" in out
    folder = tmp_path / "demo" / "out"
    assert json.loads((folder / "alerts.json").read_text())
    assert json.loads((folder / "digest.json").read_text())["blocks"]
    png = (folder / "chart.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    assert width >= 600 and height >= 300
    assert f"are in {folder}" in out
    assert elapsed < 30


def test_demo_on_the_first_of_a_month_plays_a_day_late_in_the_last_one_and_says_so(tmp_path: Path) -> None:
    """On Dec 1 a month-to-date of a few hours would size budgets from nothing (forecast 2597.5%)."""
    result, elapsed = run_demo(tmp_path, "--now", "2026-12-01T08:30Z")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert ('The demo plays Tue, Nov 24, 2026, 08:30 UTC as "today": on Dec 1 too little of December has passed'
            in out)
    assert "Spend digest · Tue, Nov 24, 2026" in out and "*November to date*" in out
    assert "[threshold] Budget search-chat: 90% used" in out and "[forecast] Budget support will be exceeded" in out
    for budget in ("search-chat", "support"):
        assert 100 < forecast_share(out, budget) < 150  # over, as the demo means, by a believable margin
    assert re.search(r"saves \$[\d,]+\.\d\d/month", out) and "cheapest:" in out
    assert elapsed < 30


def test_demo_past_mid_month_plays_today(tmp_path: Path) -> None:
    result, _ = run_demo(tmp_path, "--now", "2026-11-20T15:00Z")
    assert result.returncode == 0, result.stderr
    assert "The demo plays today, Fri, Nov 20, 2026, 15:00 UTC, with 19 full days of November behind it." in result.stdout
    assert "Spend digest · Fri, Nov 20, 2026" in result.stdout
    assert 100 < forecast_share(result.stdout, "search-chat") < 200


def test_the_demo_day_is_late_enough_in_its_month_and_already_past() -> None:
    for n in range(366 + 365):  # every day of 2028 (a leap year) and 2029
        now = datetime(2028, 1, 1, 9, 30, tzinfo=timezone.utc) + timedelta(days=n)
        played = simulated_now(now)
        assert played.day > 15 and played <= now and now - played <= timedelta(weeks=3)
        assert (played.weekday(), played.time()) == (now.weekday(), now.time())
        assert (played == now) == (now.day > 15)


def test_the_demo_ignores_the_machines_configuration(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from bot.cli import main

    for name, value in {"ADMINS": "bob", "CHECK_CRON": "never", "DATABASE_URL": "mysql://x", "TZ": "Mars/Olympus",
                        "LOG_LEVEL": "loud", "SLACK_BOT_TOKEN": "xoxb-real-looking"}.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "budget-guard.toml").write_text("this is not toml")
    assert main(["demo", "--dir", str(tmp_path / "demo")]) == 0
    assert "Daily digest" in capsys.readouterr().out
