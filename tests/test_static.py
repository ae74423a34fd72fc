"""Static checks as part of the suite: `ruff check .` over the repository and `mypy pricing db`
(the strict config in pyproject.toml), each run with this interpreter's tools."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", [
    ["ruff", "check", "."],
    ["mypy", "pricing", "db"],
], ids=["ruff", "mypy"])
def test_static_check_passes(command: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}"
