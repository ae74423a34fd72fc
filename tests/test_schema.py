"""Migrations: replicas upgrading one PostgreSQL database at the same moment all succeed."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
from sqlalchemy import create_engine, text

from db.engine import make_engine
from db.schema import current_revision, head_revision
from tests.conftest import PG_URL, REPO, _pg_schema_url


@pytest.mark.skipif(not PG_URL, reason="needs TEST_DATABASE_URL (the local PostgreSQL server)")
def test_concurrent_upgrades_of_one_database_all_succeed() -> None:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)  # type: ignore[arg-type]
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = _pg_schema_url(schema)
    try:
        upgrades = [subprocess.Popen([sys.executable, "-m", "bot.cli", "db", "upgrade", "--database-url", url],
                                     cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(3)]
        results = [(p.wait(timeout=120), p.stdout.read().decode() if p.stdout else "") for p in upgrades]
        assert [code for code, _ in results] == [0, 0, 0], results
        engine = make_engine(url)
        assert current_revision(engine) == head_revision()
        engine.dispose()
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
