"""`budget-guard demo` in a clean folder: the whole bot's output, no Slack, no network, no config."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

from tests.processes import REPO


def test_demo_runs_in_a_clean_directory(tmp_path: Path) -> None:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "bot.cli", "demo", "--dir", str(tmp_path / "demo")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path)})
    elapsed = time.monotonic() - started
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
