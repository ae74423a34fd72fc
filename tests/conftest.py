"""Shared fixtures: a migrated database on SQLite and, when TEST_DATABASE_URL is set, PostgreSQL;
a fake Slack; settings and the context opened on them (a test file overrides `app_settings`).

The schema is migrated once per session and reset for each test: a copy of a migrated SQLite
file, or one migrated PostgreSQL schema emptied before each test (a test that altered its tables
gets a freshly migrated one). Tests about migrations themselves call `db.schema.upgrade`.

The suite runs on two workers (pytest-xdist, `-n 2` in pyproject.toml); each worker has its own
schemas and ports. A test marked `restarts_postgres` takes the PostgreSQL server away: it holds
an exclusive lock that every other test holds shared, so it runs while no other test does."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, MetaData, create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from db.engine import make_engine, make_sessionmaker
from db.schema import upgrade
from jobs.config.context import Context
from jobs.config.settings import Settings
from jobs.usage.push_writer import PushWriter
from pricing.catalog import Catalog
from tests.fakes.slack_api import FakeSlack
from tests.harness import BOT_TOKEN

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PG_URL = os.environ.get("TEST_DATABASE_URL")

ENGINES = ["sqlite"] + (["postgresql"] if PG_URL else [])
SERVER_LOCK = Path(tempfile.gettempdir()) / "budget-guard-tests-postgres.lock"


@contextmanager
def server_lock(exclusive: bool = False) -> Iterator[None]:
    """The PostgreSQL server's test lock: shared to use it, exclusive to take it away."""
    with SERVER_LOCK.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(autouse=True)
def postgres_server_in_use(request: pytest.FixtureRequest) -> Iterator[None]:
    """Shared for every test; exclusive for one that restarts the server, so no other runs meanwhile."""
    with server_lock(exclusive=request.node.get_closest_marker("restarts_postgres") is not None):
        yield


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


# Everything a test could change about the schema's shape: its columns, indexes and triggers.
_SHAPE = text("""
SELECT (SELECT string_agg(table_name || '.' || column_name || ' ' || data_type, ',' ORDER BY table_name, column_name)
          FROM information_schema.columns WHERE table_schema = :schema),
       (SELECT string_agg(indexname || ' ' || indexdef, ',' ORDER BY indexname) FROM pg_indexes
         WHERE schemaname = :schema),
       (SELECT string_agg(t.tgname, ',' ORDER BY t.tgname) FROM pg_trigger t
          JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = :schema AND NOT t.tgisinternal)
""")
_RESTART_SEQUENCES = text("SELECT setval(format('%I.%I', schemaname, sequencename)::regclass, 1, false) "
                          "FROM pg_sequences WHERE schemaname = :schema")


class PostgresSchemas:
    """One migrated PostgreSQL schema that each test gets back empty, its sequences restarted."""

    def __init__(self) -> None:
        assert PG_URL
        self.admin = create_engine(PG_URL, pool_pre_ping=True)
        self.schemas: list[str] = []
        self.engine: Engine | None = None  # on the current schema: its triggers name tables unqualified
        self.shape: tuple[object, ...] = ()
        self.tables: list[str] = []  # children before parents, so no foreign key stops a delete

    @property
    def schema(self) -> str:
        return self.schemas[-1]

    def fresh(self) -> str:
        """The URL of the schema, emptied; a freshly migrated one if the last test altered it or holds a lock."""
        if self.engine is None or not self._reset():
            self._migrate()
        return _pg_schema_url(self.schema)

    def _migrate(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
        schema = f"t_{uuid.uuid4().hex[:12]}"
        with self.admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        self.schemas.append(schema)
        upgrade(_pg_schema_url(schema))
        self.engine = create_engine(_pg_schema_url(schema), pool_pre_ping=True, pool_size=1)
        metadata = MetaData()
        metadata.reflect(self.engine, schema=schema)
        self.tables = [t.name for t in reversed(metadata.sorted_tables) if t.name != "alembic_version"]
        with self.engine.connect() as connection:
            self.shape = tuple(connection.execute(_SHAPE, {"schema": schema}).one())

    def _reset(self) -> bool:
        assert self.engine is not None
        try:
            with self.engine.begin() as connection:
                connection.execute(text("SET LOCAL lock_timeout = '5s'"))
                if tuple(connection.execute(_SHAPE, {"schema": self.schema}).one()) != self.shape:
                    return False
                for table in self.tables:
                    connection.execute(text(f'DELETE FROM "{table}"'))
                connection.execute(_RESTART_SEQUENCES, {"schema": self.schema})
        except DBAPIError:
            return False
        return True

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
        with server_lock(), self.admin.begin() as connection:
            for schema in self.schemas:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        self.admin.dispose()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per session, for tests to copy."""
    path = tmp_path_factory.mktemp("template") / "migrated.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_schemas() -> Iterator[PostgresSchemas]:
    schemas = PostgresSchemas()
    yield schemas
    schemas.close()


def _copy(template: Path, path: Path) -> str:
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=ENGINES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path, migrated_sqlite: Path) -> str:
    """A URL to a migrated, empty database: a SQLite file, or a PostgreSQL schema no other test is using."""
    if request.param == "sqlite":
        return _copy(migrated_sqlite, tmp_path / "ledger.db")
    return request.getfixturevalue("postgres_schemas").fresh()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


@pytest.fixture
def sqlite_url(tmp_path: Path, migrated_sqlite: Path) -> str:
    """A migrated SQLite file only (for tests that are about the embedded default)."""
    return _copy(migrated_sqlite, tmp_path / "embedded.db")


@pytest.fixture
def slack_scopes() -> set[str] | None:
    """The bot scopes the fake Slack's token was granted; None: every one."""
    return None


@pytest.fixture
def slack(slack_scopes: set[str] | None) -> Iterator[FakeSlack]:
    """A fake Slack Web API that takes the test bot token."""
    with FakeSlack(token=BOT_TOKEN, scopes=slack_scopes) as fake:
        yield fake


@pytest.fixture
def app_settings(database_url: str) -> Settings:
    """The settings `context` opens; a test file overrides this with its own."""
    return Settings(database_url=database_url)


@pytest.fixture
def context(app_settings: Settings) -> Iterator[Context]:
    ctx = Context.open(app_settings)
    yield ctx
    ctx.close()


@pytest.fixture
def ledger_context(engine: Engine, sessions: sessionmaker[Session], catalog: Catalog) -> Context:
    """What a ledger job takes: this test's database, default settings and the test module's `catalog` fixture."""
    return Context(Settings(), engine, sessions, catalog)


@pytest.fixture
def push_writer(ledger_context: Context) -> Iterator[PushWriter]:
    """What `POST /v1/usage` pushes through, on `ledger_context`."""
    writer = PushWriter(ledger_context)
    yield writer
    writer.close()
