"""`budget-guard demo` in a clean folder: the whole bot's output, no Slack, no network, no config."""

from __future__ import annotations

import subprocess
import sys
import time
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
    assert (tmp_path / "demo" / "out" / "alerts.json").exists()
    assert elapsed < 30
