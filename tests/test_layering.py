"""The layering the README describes, checked: `bot → jobs → (pricing, db)`, nothing imports
upward, pricing imports nothing of ours, and inside `jobs` each domain imports only the ones
below it (`jobs/__init__.py` lists them in order)."""

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

JOBS_ORDER = ["config", "runtime", "usage", "forecast", "advice", "budgets", "digest"]


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def upward_imports(package: str, root: Path = ROOT) -> list[str]:
    """`file: module` for every import in `package` of one of our packages it may not import."""
    found = []
    for path in sorted((root / package).rglob("*.py")):
        for name in _imports(path):
            head = name.split(".")[0]
            if head in MAY_IMPORT and head not in MAY_IMPORT[package]:
                found.append(f"{path.relative_to(root)}: {name}")
    return found


def upward_jobs_imports(root: Path = ROOT) -> list[str]:
    """`file: module` for every import of a `jobs` domain listed after the importing one."""
    found = []
    for path in sorted((root / "jobs").rglob("*.py")):
        parts = path.relative_to(root / "jobs").parts
        if len(parts) == 1:
            continue
        rank = JOBS_ORDER.index(parts[0])
        for name in _imports(path):
            pieces = name.split(".")
            if pieces[0] == "jobs" and len(pieces) > 1 and JOBS_ORDER.index(pieces[1]) > rank:
                found.append(f"{path.relative_to(root)}: {name}")
    return found


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_no_package_imports_upward(package: str) -> None:
    assert upward_imports(package) == []


def test_an_upward_import_is_caught(tmp_path: Path) -> None:
    (tmp_path / "pricing").mkdir()
    (tmp_path / "pricing" / "rates.py").write_text("def f():\n    from db.models import UsageBucket\n")
    assert upward_imports("pricing", tmp_path) == ["pricing/rates.py: db.models"]


def test_jobs_domains_import_only_the_ones_below() -> None:
    assert upward_jobs_imports() == []


def test_every_jobs_module_sits_in_a_listed_domain() -> None:
    listed = {p.relative_to(ROOT / "jobs").parts[0] for p in (ROOT / "jobs").rglob("*.py")} - {"__init__.py", "schedule.py"}
    assert listed == set(JOBS_ORDER)


def test_an_upward_jobs_import_is_caught(tmp_path: Path) -> None:
    (tmp_path / "jobs" / "usage").mkdir(parents=True)
    (tmp_path / "jobs" / "usage" / "ingest.py").write_text("from jobs.budgets.specs import BudgetSpec\n")
    assert upward_jobs_imports(tmp_path) == ["jobs/usage/ingest.py: jobs.budgets.specs"]


def listener_database_imports(root: Path = ROOT) -> list[str]:
    """`file: module` for every import of `db` or SQLAlchemy under `bot/listeners/`: a listener
    parses, calls a job function and renders."""
    found = []
    for path in sorted((root / "bot" / "listeners").rglob("*.py")):
        found += [f"{path.relative_to(root)}: {name}" for name in _imports(path)
                  if name.split(".")[0] in {"db", "sqlalchemy"}]
    return found


def test_no_listener_imports_the_database() -> None:
    assert listener_database_imports() == []


def test_a_listener_database_import_is_caught(tmp_path: Path) -> None:
    (tmp_path / "bot" / "listeners").mkdir(parents=True)
    (tmp_path / "bot" / "listeners" / "budget.py").write_text("def f():\n    from db.models import Budget\n")
    assert listener_database_imports(tmp_path) == ["bot/listeners/budget.py: db.models"]
