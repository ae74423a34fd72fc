"""The layering the README describes, checked: `bot → jobs → (pricing, db)`, nothing imports
upward, and pricing imports nothing of ours."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAY_IMPORT = {
    "bot": {"bot", "jobs", "pricing", "db"},
    "jobs": {"jobs", "pricing", "db"},
    "db": {"db"},
    "pricing": {"pricing"},
}


def upward_imports(package: str, root: Path = ROOT) -> list[str]:
    """`file: module` for every import in `package` of one of our packages it may not import."""
    found = []
    for path in sorted((root / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                head = name.split(".")[0]
                if head in MAY_IMPORT and head not in MAY_IMPORT[package]:
                    found.append(f"{path.relative_to(root)}: {name}")
    return found


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_no_package_imports_upward(package: str) -> None:
    assert upward_imports(package) == []


def test_an_upward_import_is_caught(tmp_path: Path) -> None:
    (tmp_path / "pricing").mkdir()
    (tmp_path / "pricing" / "rates.py").write_text("def f():\n    from db.models import UsageBucket\n")
    assert upward_imports("pricing", tmp_path) == ["pricing/rates.py: db.models"]
