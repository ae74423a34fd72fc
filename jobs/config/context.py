"""What a running budget-guard holds: settings, the database and the price catalog."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from db.engine import make_engine, make_sessionmaker
from jobs.config.catalog import build_catalog
from jobs.config.redaction import learn
from jobs.config.settings import Settings
from pricing.catalog import Catalog


@dataclass
class Context:
    """Shared by the server, the scheduler and the CLI; every job takes it as its first argument."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    catalog: Catalog
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def open(cls, settings: Settings, *, with_synced_prices: bool = True) -> "Context":
        """Connect to the database and load the catalog (with synced prices when the schema has them)."""
        learn(settings)
        engine = make_engine(settings.database_url)
        sessions = make_sessionmaker(engine)
        catalog = build_catalog(settings)
        context = cls(settings, engine, sessions, catalog)
        if with_synced_prices:
            context.reload_catalog()
        return context

    def reload_catalog(self) -> Catalog:
        """Rebuild the catalog after a price sync; tolerate a database without the schema yet."""
        from sqlalchemy.exc import OperationalError, ProgrammingError

        try:
            with self.sessions() as session:
                catalog = build_catalog(self.settings, session)
        except (OperationalError, ProgrammingError):
            catalog = build_catalog(self.settings)
        with self._lock:
            self.catalog = catalog
        return catalog

    def close(self) -> None:
        self.engine.dispose()
