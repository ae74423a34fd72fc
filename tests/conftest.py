"""Shared fixtures: a migrated database on SQLite and, when TEST_DATABASE_URL is set, PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from db.engine import make_engine, make_sessionmaker
from db.schema import upgrade

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PG_URL = os.environ.get("TEST_DATABASE_URL")

ENGINES = ["sqlite"] + (["postgresql"] if PG_URL else [])


def needs_shared(relative: str) -> pytest.MarkDecorator:
    """Skip unless `relative` exists in the team's shared folder beside the checkout, saying why."""
    path = SHARED / relative
    return pytest.mark.skipif(not path.exists(), reason=(
        f"needs {relative} from the shared folder beside the checkout ({path} is missing): the real API "
        "specs and data sets live in ../shared, outside the repository; put or link that folder there to run it"))


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's own configuration or secrets."""
    for key in list(os.environ):
        if key.startswith(("SLACK_", "TOGETHER_", "INGEST_", "BUDGET_GUARD_")) or key in {"DATABASE_URL", "TZ", "PORT"}:
            monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)


def _pg_schema_url(schema: str) -> str:
    assert PG_URL
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture(params=ENGINES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to a freshly migrated, empty database: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
        upgrade(url)
        yield url
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, pool_pre_ping=True)  # type: ignore[arg-type]
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = _pg_schema_url(schema)
    upgrade(url)
    try:
        yield url
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite file only (for tests that are about the embedded default)."""
    url = f"sqlite:///{tmp_path / 'embedded.db'}"
    upgrade(url)
    return url
