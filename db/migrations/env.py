"""Alembic environment: runs migrations on the URL the caller configured."""

from alembic import context
from sqlalchemy import Connection, create_engine, text

from db.models import Base

config = context.config
# Replicas starting together may all run `serve --upgrade-db`: on PostgreSQL each upgrade
# first takes this schema's advisory lock, so one migrates and the others then find it done.
LOCK = "SELECT pg_advisory_xact_lock(hashtext('budget-guard migrations ' || current_schema()))"


def migrate(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text(LOCK))
        context.run_migrations()


def run() -> None:
    connectable = config.attributes.get("connection")
    if connectable is not None:
        migrate(connectable)
        return
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("the Alembic config names no database: set sqlalchemy.url or pass a connection")
    engine = create_engine(url)
    with engine.connect() as connection:
        migrate(connection)
    engine.dispose()


run()
