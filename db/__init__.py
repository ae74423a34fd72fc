"""Tables, engines, queries and migrations. Importing the package itself is cheap (the CLI reads
the default below while building its parser); its modules bring SQLAlchemy and Alembic."""

EMBEDDED_DATABASE_URL = "sqlite:///budget-guard.db"
"""The embedded default: a SQLite file in the current folder."""
