"""Bulk writes for a file import: event-id claims and buckets, inside the caller's transaction.

`bulk_writer(session, source)` is what an import writes through. On PostgreSQL it is a
`CopyWriter`: claims and buckets go up with COPY into temporary staging tables and are
merged set-wise (one `INSERT ... SELECT ... ON CONFLICT` per claim batch, one bucket merge
at the end), so no statement carries thousands of bound parameters and each bucket is
written once per import, not once per chunk. Elsewhere (SQLite) it is a `DirectWriter`, the
ledger's own multi-row upserts. Both keep the ledger's rules: an event id counts once, a
bucket never passes its capacity (BucketFull; the caller rolls back), and the rollup
triggers of `usage_buckets` see every change.

`claim_new_event_ids` is the optimistic claim of a one-pass import that expects every id to be
new: on PostgreSQL the ids stream through one open COPY straight into `seen_events`, so the
server builds the index while the file is still being read; an id counted before, or twice,
fails that COPY (EventsSeen, at the latest from `finish()`), and the caller rolls back.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from contextlib import ExitStack
from datetime import datetime, timezone
from typing import Any, Protocol

from sqlalchemy.orm import Session

from db.ledger import (
    ADD_ON_CONFLICT,
    COUNT_COLUMNS,
    KEY_COLUMNS,
    WRITE_COLUMNS,
    BucketFull,
    BucketRow,
    add_buckets,
    claim_event_ids,
    over_capacity,
)
from db.models import MAX_BUCKET_COUNT, MAX_BUCKET_NANOS

__all__ = ["BucketsTaken", "CopyWriter", "DirectWriter", "EventsSeen", "LedgerWriter", "bulk_writer"]

BUCKET_STAGE = "import_bucket_stage"
EVENT_STAGE = "import_event_stage"
STAGE_KEY = tuple(c for c in KEY_COLUMNS if c != "source")  # one writer, one source
STAGE_COLUMNS = (*STAGE_KEY, *COUNT_COLUMNS, "cost_nanos", "price_id", "catalog_model", "reported_cost_nanos")
STAGE_TYPES = (
    "timestamp", *["text"] * (len(STAGE_KEY) - 1), *["int8"] * len(COUNT_COLUMNS), "int8", "int4", "text", "int8",
)


class EventsSeen(Exception):
    """Some ids of an optimistic claim were counted before, or came twice; roll back."""


class BucketsTaken(Exception):
    """Buckets written straight into the ledger met ones a concurrent writer added meanwhile; roll back."""


class LedgerWriter(Protocol):
    """Where an ingest's claims and buckets go. `finish()` before the transaction commits."""

    def claim_event_ids(self, event_ids: Collection[str], seen_at: datetime) -> set[str]:
        """Record `event_ids` as counted; return those that were new."""

    def claim_new_event_ids(self, event_ids: Sequence[str], seen_at: datetime) -> None:
        """Record `event_ids` as counted, all of them new and none twice: EventsSeen (now, at
        a later write or at `finish`) if not."""

    def add_buckets(self, rows: Iterable[BucketRow], span: tuple[datetime, datetime] | None = None) -> None:
        """Add costed usage into the source's buckets (BucketFull, now or at `finish`, if one overflows).

        `span`, the first and last bucket start of `rows` when the caller knows them, lets a writer
        put rows of hours the ledger holds nothing of (for this source) straight in."""

    def finish(self) -> None:
        """Write whatever is still held; BucketFull naming the buckets that could not take it."""

    def end_claims(self) -> None:
        """Close the claims streaming since `claim_new_event_ids` (EventsSeen if one was not new),
        so the session may run other statements again."""

    def abort(self) -> None:
        """Let go of anything still open, before the caller rolls back (after any error)."""


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

    def claim_new_event_ids(self, event_ids: Sequence[str], seen_at: datetime) -> None:
        if len(claim_event_ids(self.session, event_ids, seen_at)) != len(event_ids):
            raise EventsSeen()

    def add_buckets(self, rows: Iterable[BucketRow], span: tuple[datetime, datetime] | None = None) -> None:
        add_buckets(self.session, self.source, rows)

    def finish(self) -> None:
        pass

    def end_claims(self) -> None:
        pass

    def abort(self) -> None:
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
LEDGER_TYPES = (*STAGE_TYPES[:2], "text", *STAGE_TYPES[2:])  # the stage's, with `source` third
HOLDS = "SELECT EXISTS (SELECT 1 FROM usage_buckets WHERE source = %(source)s AND bucket_start BETWEEN %(first)s AND %(last)s)"
ADD_STAGED = f"""
INSERT INTO usage_buckets ({", ".join(KEY_COLUMNS)}, {", ".join(STAGE_COLUMNS[len(STAGE_KEY):])})
SELECT {", ".join("%(source)s" if c == "source" else c for c in KEY_COLUMNS)},
       {", ".join(STAGE_COLUMNS[len(STAGE_KEY):])}
FROM {BUCKET_STAGE} WHERE {_WITHIN}
ORDER BY bucket_start, width, model
ON CONFLICT ({", ".join(KEY_COLUMNS)}) DO UPDATE SET {ADD_ON_CONFLICT}
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
    Buckets of hours the ledger holds nothing of for the source (the caller gives their `span`)
    are copied straight into `usage_buckets`. Others are held in their staging table until
    `finish()`, which adds them into `usage_buckets` in one statement, checking capacity there:
    as staged when one `add_buckets` call wrote them all (one row per bucket), else summed per
    bucket first."""

    def __init__(self, session: Session, source: str) -> None:
        self.session = session
        self.source = source
        self._staged = False
        self._batches = self._staged_rows = 0  # add_buckets calls, and rows they staged
        self._starts: dict[datetime, datetime] = {}
        self._claims: ExitStack | None = None  # the open COPY of `claim_new_event_ids`
        self._claim_copy: Any = None
        self._claim_tail = ""

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
        self.end_claims()
        with self._cursor() as cursor:
            cursor.execute(f"TRUNCATE {EVENT_STAGE}")
            with cursor.copy(f"COPY {EVENT_STAGE} (event_id) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["text"])
                for event_id in event_ids:
                    copy.write_row((event_id,))
            cursor.execute(CLAIM_EVENTS, {"seen_at": _naive_utc(seen_at)})
            seen = {row[0] for row in cursor}
        return set(event_ids) - seen

    def claim_new_event_ids(self, event_ids: Sequence[str], seen_at: datetime) -> None:
        if not event_ids:
            return
        if self._claims is None:
            with ExitStack() as stack:
                cursor = stack.enter_context(self._cursor())
                self._claim_copy = stack.enter_context(cursor.copy("COPY seen_events (event_id, seen_at) FROM STDIN"))
                self._claims, self._claim_tail = stack.pop_all(), f"\t{_naive_utc(seen_at).isoformat(sep=' ')}\n"
        tail = self._claim_tail
        data = tail.join(event_ids) + tail
        if "\\" in data or "\r" in data or data.count("\n") != len(event_ids) or data.count("\t") != len(event_ids):
            naive = _naive_utc(seen_at)
            for event_id in event_ids:  # characters COPY's text format escapes: psycopg does it
                self._claim_copy.write_row((event_id, naive))
        else:
            self._claim_copy.write(data)

    def abort(self) -> None:
        if self._claims is not None:  # end the COPY as failed, so the transaction can roll back
            stack, self._claims, self._claim_copy = self._claims, None, None
            stack.__exit__(EventsSeen, EventsSeen(), None)

    def end_claims(self) -> None:
        if self._claims is None:
            return
        from psycopg import errors

        stack, self._claims, self._claim_copy = self._claims, None, None
        try:
            stack.close()
        except (errors.UniqueViolation, errors.DeadlockDetected) as exc:
            raise EventsSeen() from exc

    def add_buckets(self, rows: Iterable[BucketRow], span: tuple[datetime, datetime] | None = None) -> None:
        self.end_claims()
        if span is not None and not self._holds(span):
            from psycopg import errors

            try:  # straight into the ledger: its triggers and foreign keys see the rows as any insert
                self._copy_rows(f"usage_buckets ({', '.join(WRITE_COLUMNS)})", LEDGER_TYPES, rows, self.source)
            except errors.UniqueViolation as exc:  # a concurrent writer added one of these buckets meanwhile
                raise BucketsTaken() from exc
            return
        self._staged_rows += self._copy_rows(f"{BUCKET_STAGE} ({', '.join(STAGE_COLUMNS)})", STAGE_TYPES, rows)
        self._batches += 1

    def _holds(self, span: tuple[datetime, datetime]) -> bool:
        """Whether the ledger holds anything of this source with a bucket start in `span`."""
        with self._cursor() as cursor:
            cursor.execute(HOLDS, {"source": self.source, "first": _naive_utc(span[0]), "last": _naive_utc(span[1])})
            return bool(cursor.fetchone()[0])

    def _copy_rows(self, target: str, types: Sequence[str], rows: Iterable[BucketRow], source: str | None = None) -> int:
        """COPY `rows` into `target` (with `source` third, after the width, when given); how many
        were written, or BucketFull naming those that alone hold more than a bucket may."""
        full: list[BucketRow] = []
        written = 0
        starts = self._starts
        named = () if source is None else (source,)
        with self._cursor() as cursor, cursor.copy(f"COPY {target} FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(types)
            for r in rows:
                if over_capacity(r):
                    full.append(r)
                    continue
                start = starts.get(r.bucket_start)
                if start is None:
                    start = starts[r.bucket_start] = _naive_utc(r.bucket_start)
                copy.write_row((
                    start, r.width, *named, r.model, r.mode, r.project, r.feature, r.api_key, r.environment, r.tags,
                    r.input_tokens, r.cached_input_tokens, r.output_tokens, r.requests, r.uptime_minutes,
                    r.cost_nanos, r.price_id, r.catalog_model, r.reported_cost_nanos,
                ))
                written += 1
        if full:
            raise BucketFull(full)
        return written

    def finish(self) -> None:
        self.end_claims()
        if not self._staged:
            return
        refused: list[BucketRow] = []
        with self._cursor() as cursor:
            if self._batches:
                cursor.execute("SET LOCAL work_mem = '256MB'")  # the merge sorts and groups in memory, not on disk
                cursor.execute(f"ANALYZE {BUCKET_STAGE}")  # the merge's plan sees how many rows and buckets there are
                if self._batches > 1 or not self._added_as_staged(cursor):
                    cursor.execute(MERGE_BUCKETS, {"source": self.source})
                    refused = [_bucket_row(row) for row in cursor]
            cursor.execute(f"DROP TABLE {BUCKET_STAGE}, {EVENT_STAGE}")
        self._staged = False
        self._batches = self._staged_rows = 0
        if refused:
            raise BucketFull(refused)

    def _added_as_staged(self, cursor: Any) -> bool:
        """Add the stage one `add_buckets` call wrote (one row per bucket) into the ledger as it is,
        without grouping it first: True when every row went in; False (undone) when one was
        refused or two shared a bucket after all, for the grouping merge to say which."""
        from psycopg import errors

        cursor.execute("SAVEPOINT import_buckets")
        try:
            cursor.execute(ADD_STAGED, {"source": self.source})
            if cursor.rowcount == self._staged_rows:
                cursor.execute("RELEASE SAVEPOINT import_buckets")
                return True
        except errors.CardinalityViolation:
            pass
        cursor.execute("ROLLBACK TO SAVEPOINT import_buckets")
        return False


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
