"""Bulk writes for a file import: event-id claims and buckets, inside the caller's transaction.

`bulk_writer(session, source)` is what an import writes through. On PostgreSQL it is a
`CopyWriter`: claims and buckets go up with COPY into temporary staging tables and are
merged set-wise (one `INSERT ... SELECT ... ON CONFLICT` per claim batch, one bucket merge
at the end), so no statement carries thousands of bound parameters and each bucket is
written once per import, not once per chunk. Elsewhere (SQLite) it is a `DirectWriter`, the
ledger's own multi-row upserts. Both keep the ledger's rules: an event id counts once, a
bucket never passes its capacity (BucketFull; the caller rolls back), and the rollup
triggers of `usage_buckets` see every change.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime, timezone
from typing import Any, Protocol

from sqlalchemy.orm import Session

from db.ledger import (
    ADD_ON_CONFLICT,
    COUNT_COLUMNS,
    KEY_COLUMNS,
    BucketFull,
    BucketRow,
    add_buckets,
    claim_event_ids,
    over_capacity,
)
from db.models import MAX_BUCKET_COUNT, MAX_BUCKET_NANOS

__all__ = ["CopyWriter", "DirectWriter", "LedgerWriter", "bulk_writer"]

BUCKET_STAGE = "import_bucket_stage"
EVENT_STAGE = "import_event_stage"
STAGE_KEY = tuple(c for c in KEY_COLUMNS if c != "source")  # one writer, one source
STAGE_COLUMNS = (*STAGE_KEY, *COUNT_COLUMNS, "cost_nanos", "price_id", "catalog_model", "reported_cost_nanos")
STAGE_TYPES = (
    "timestamp", *["text"] * (len(STAGE_KEY) - 1), *["int8"] * len(COUNT_COLUMNS), "int8", "int4", "text", "int8",
)


class LedgerWriter(Protocol):
    """Where an ingest's claims and buckets go. `finish()` before the transaction commits."""

    def claim_event_ids(self, event_ids: Collection[str], seen_at: datetime) -> set[str]:
        """Record `event_ids` as counted; return those that were new."""

    def add_buckets(self, rows: Iterable[BucketRow]) -> None:
        """Add costed usage into the source's buckets (BucketFull, now or at `finish`, if one overflows)."""

    def finish(self) -> None:
        """Write whatever is still held; BucketFull naming the buckets that could not take it."""


def bulk_writer(session: Session, source: str) -> LedgerWriter:
    """The fastest writer the session's engine has for an import into `source`."""
    dialect = session.get_bind().dialect
    if dialect.name == "postgresql" and dialect.driver == "psycopg":  # COPY through psycopg 3
        return CopyWriter(session, source)
    return DirectWriter(session, source)


class DirectWriter:
    """The ledger's own statements, applied as they come (SQLite, and every push)."""

    def __init__(self, session: Session, source: str) -> None:
        self.session = session
        self.source = source

    def claim_event_ids(self, event_ids: Collection[str], seen_at: datetime) -> set[str]:
        return claim_event_ids(self.session, event_ids, seen_at)

    def add_buckets(self, rows: Iterable[BucketRow]) -> None:
        add_buckets(self.session, self.source, rows)

    def finish(self) -> None:
        pass


_MERGE_KEY = ", ".join(STAGE_KEY)
_SUMS = ", ".join(f"sum({c}) AS {c}" for c in COUNT_COLUMNS)
_WITHIN = " AND ".join(  # what the group alone may hold; the ON CONFLICT clause checks it with the stored bucket
    [f"{c} <= {MAX_BUCKET_COUNT}" for c in COUNT_COLUMNS]
    + [f"coalesce({c}, 0) <= {MAX_BUCKET_NANOS}" for c in ("cost_nanos", "reported_cost_nanos")]
)
MERGE_BUCKETS = f"""
WITH grouped AS MATERIALIZED (
    SELECT {_MERGE_KEY}, {_SUMS},
           CASE WHEN count(cost_nanos) = count(*) THEN sum(cost_nanos) END AS cost_nanos,
           CASE WHEN count(cost_nanos) = count(*) THEN max(price_id) END AS price_id,
           max(catalog_model) AS catalog_model,
           CASE WHEN count(reported_cost_nanos) = count(*) THEN sum(reported_cost_nanos) END AS reported_cost_nanos
    FROM {BUCKET_STAGE} GROUP BY {_MERGE_KEY}
), written AS (
    INSERT INTO usage_buckets ({", ".join(KEY_COLUMNS)}, {", ".join(STAGE_COLUMNS[len(STAGE_KEY):])})
    SELECT {", ".join("%(source)s" if c == "source" else c for c in KEY_COLUMNS)},
           {", ".join(STAGE_COLUMNS[len(STAGE_KEY):])}
    FROM grouped WHERE {_WITHIN}
    ORDER BY bucket_start, width, model
    ON CONFLICT ({", ".join(KEY_COLUMNS)}) DO UPDATE SET {ADD_ON_CONFLICT}
    RETURNING {_MERGE_KEY}
)
SELECT g.* FROM grouped g
WHERE NOT EXISTS (SELECT 1 FROM written w WHERE {" AND ".join(f"w.{c} = g.{c}" for c in STAGE_KEY)})
"""
CLAIM_EVENTS = f"""
WITH claimed AS (
    INSERT INTO seen_events (event_id, seen_at)
    SELECT event_id, %(seen_at)s FROM {EVENT_STAGE} ORDER BY event_id
    ON CONFLICT (event_id) DO NOTHING RETURNING event_id
)
SELECT s.event_id FROM {EVENT_STAGE} s LEFT JOIN claimed c ON c.event_id = s.event_id WHERE c.event_id IS NULL
"""


class CopyWriter:
    """PostgreSQL: COPY into temporary staging tables (dropped with the transaction), then merge.

    Each `claim_event_ids` call copies its ids and claims them in one statement (a concurrent
    import or push of the same id waits on the unique index, as with the ledger's claims).
    Buckets are held in their staging table until `finish()`, which sums them per bucket and
    merges them into `usage_buckets` in one statement, checking capacity there."""

    def __init__(self, session: Session, source: str) -> None:
        self.session = session
        self.source = source
        self._staged = False
        self._starts: dict[datetime, datetime] = {}

    def _cursor(self) -> Any:
        """A cursor of the session's own psycopg connection, inside its transaction; the staging
        tables are made on first use (temporary: ON COMMIT DROP, and gone with a rollback)."""
        connection: Any = self.session.connection().connection.driver_connection  # a psycopg.Connection
        cursor = connection.cursor()
        if not self._staged:
            columns = ", ".join(STAGE_COLUMNS)
            cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{BUCKET_STAGE}, pg_temp.{EVENT_STAGE}")
            cursor.execute(f"CREATE TEMPORARY TABLE {BUCKET_STAGE} ON COMMIT DROP AS "
                           f"SELECT {columns} FROM usage_buckets WITH NO DATA")
            cursor.execute(f"CREATE TEMPORARY TABLE {EVENT_STAGE} ON COMMIT DROP AS "
                           "SELECT event_id FROM seen_events WITH NO DATA")
            self._staged = True
        return cursor

    def claim_event_ids(self, event_ids: Collection[str], seen_at: datetime) -> set[str]:
        if not event_ids:
            return set()
        with self._cursor() as cursor:
            cursor.execute(f"TRUNCATE {EVENT_STAGE}")
            with cursor.copy(f"COPY {EVENT_STAGE} (event_id) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["text"])
                for event_id in event_ids:
                    copy.write_row((event_id,))
            cursor.execute(CLAIM_EVENTS, {"seen_at": _naive_utc(seen_at)})
            seen = {row[0] for row in cursor}
        return set(event_ids) - seen

    def add_buckets(self, rows: Iterable[BucketRow]) -> None:
        rows = list(rows)
        full = [r for r in rows if over_capacity(r)]
        if full:
            raise BucketFull(full)
        starts = self._starts
        with self._cursor() as cursor, cursor.copy(
            f"COPY {BUCKET_STAGE} ({', '.join(STAGE_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(STAGE_TYPES)
            for r in rows:
                start = starts.get(r.bucket_start)
                if start is None:
                    start = starts[r.bucket_start] = _naive_utc(r.bucket_start)
                copy.write_row((
                    start, r.width, r.model, r.mode, r.project, r.feature, r.api_key, r.environment, r.tags,
                    r.input_tokens, r.cached_input_tokens, r.output_tokens, r.requests, r.uptime_minutes,
                    r.cost_nanos, r.price_id, r.catalog_model, r.reported_cost_nanos,
                ))

    def finish(self) -> None:
        if not self._staged:
            return
        with self._cursor() as cursor:
            cursor.execute(f"ANALYZE {BUCKET_STAGE}")  # the merge's plan sees how many rows and buckets there are
            cursor.execute(MERGE_BUCKETS, {"source": self.source})
            refused = [_bucket_row(row) for row in cursor]
            cursor.execute(f"DROP TABLE {BUCKET_STAGE}, {EVENT_STAGE}")
        self._staged = False
        if refused:
            raise BucketFull(refused)


def _naive_utc(moment: datetime) -> datetime:
    """How a UTCDateTime column holds `moment`: naive, in UTC."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime given; budget-guard stores aware UTC times")
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


def _bucket_row(values: tuple[Any, ...]) -> BucketRow:
    named = dict(zip(STAGE_COLUMNS, values))
    named["bucket_start"] = named["bucket_start"].replace(tzinfo=timezone.utc)
    for column in (*COUNT_COLUMNS, "cost_nanos", "reported_cost_nanos"):
        if named[column] is not None:
            named[column] = int(named[column])
    return BucketRow(**named)
