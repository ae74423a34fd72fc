"""Imports through the bulk writer (db/bulk.py): on PostgreSQL, COPY into staging tables and one
set-wise merge; on SQLite, the ledger's own upserts. Either way a refused file writes nothing, an
event id counts once however often it arrives, and the daily rollups follow the buckets."""

from __future__ import annotations

import csv
import json
import shutil
import threading
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from db.bulk import CopyWriter, DirectWriter, bulk_writer
from db.engine import make_engine, make_sessionmaker
from db.models import PriceRecord, SeenEvent, UsageBucket, counted_model
from db.rollups import daily_rows, local_day
from jobs.config.catalog import build_catalog
from jobs.config.context import Context
from jobs.config.sections import PriceOverride
from jobs.config.settings import Settings
from jobs.usage.imports import import_file
from jobs.usage.ingest import IngestResult
from jobs.usage.push_writer import PushWriter
from jobs.usage.records import IngestRejected
from pricing.catalog import Catalog

NOW = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
START = datetime(2026, 11, 10, 3, tzinfo=timezone.utc)
CHEAP = "arcee-ai/maestro-reasoning"  # $0.90 in / $3.30 out per 1M
PRICEY = "acme/pricey-model"  # $150 in / $600 out per 1M (configured)
UNPRICED = "nobody/unpriced-model"
HEADER = ["id", "created", "model", "prompt_tokens", "completion_tokens", "cached_tokens", "mode", "project"]
ZONE = ZoneInfo("America/New_York")  # local days straddle UTC dates


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return build_catalog(Settings(prices=[PriceOverride(model=PRICEY, input=Decimal(150), output=Decimal(600))]))


def usage(count: int, prefix: str, *, first: int = 0) -> list[list[Any]]:
    """`count` CSV rows over four days: three models (one unpriced), two projects, some batch, some cached."""
    rows = []
    for n in range(first, first + count):
        rows.append([f"{prefix}-{n}", int((START + timedelta(minutes=37 * n % (4 * 1440))).timestamp()),
                     [CHEAP, PRICEY, UNPRICED][n % 3], 1000 + 13 * n, 200 + n, (n % 5) * 40,
                     "batch" if n % 7 == 0 else "", ["web", "etl"][n % 2]])
    return rows


def write_csv(path: Path, rows: list[list[Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


def state(sessions: sessionmaker[Session]) -> tuple[list[tuple[Any, ...]], int]:
    """Every bucket (all but its row id) and how many event ids are counted."""
    with sessions() as session:
        buckets = sorted(
            (b.bucket_start, b.source, b.model, b.catalog_model, b.mode, b.project, b.input_tokens,
             b.cached_input_tokens, b.output_tokens, b.requests, b.cost_nanos, b.price_id)
            for b in session.scalars(select(UsageBucket))
        )
        ids = session.scalar(select(func.count()).select_from(SeenEvent)) or 0
    return buckets, ids


def no_staging_left(sessions: sessionmaker[Session]) -> bool:
    with sessions() as session:
        if session.get_bind().dialect.name != "postgresql":
            return True
        return session.scalar(text("SELECT to_regclass('pg_temp.import_bucket_stage')")) is None


def test_postgresql_imports_go_through_copy_and_sqlite_through_the_ledger(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        writer = bulk_writer(session, "import")
        expected = CopyWriter if session.get_bind().dialect.name == "postgresql" else DirectWriter
        assert type(writer) is expected


def test_a_refused_file_writes_nothing_and_once_fixed_imports_once(
    ledger_context: Context,
    sessions: sessionmaker[Session], catalog: Catalog, tmp_path: Path
) -> None:
    import_file(ledger_context, write_csv(tmp_path / "seed.csv", usage(40, "seed")), now=NOW)
    before = state(sessions)

    bad = usage(120, "f")
    bad[100][3] = "-5"  # line 102: caught by the checking pass, before anything is staged
    with pytest.raises(IngestRejected) as refused:
        import_file(ledger_context, write_csv(tmp_path / "bad.csv", bad), now=NOW, chunk_lines=50)
    assert [line for line, _ in refused.value.errors] == [102]
    assert state(sessions) == before

    # $6,000,000 each, same bucket, in different chunks: only the sum of the chunks passes $10,000,000.
    full = usage(120, "f")
    hour = int(datetime(2026, 11, 11, 5, tzinfo=timezone.utc).timestamp())
    for n in (10, 110):  # lines 12 and 112
        full[n] = [f"big-{n}", hour + n, PRICEY, 0, 10**10, 0, "", "web"]
    path = write_csv(tmp_path / "full.csv", full)
    with pytest.raises(IngestRejected) as refused:
        import_file(ledger_context, path, now=NOW, chunk_lines=50)
    [(line, reason)] = refused.value.errors
    # SQLite's upsert refuses the chunk that tips the bucket over; PostgreSQL's one merge names the bucket's first line.
    with sessions() as session:
        assert line == (12 if session.get_bind().dialect.name == "postgresql" else 112)
    assert f"the bucket of {PRICEY} at 2026-11-11 05:00 UTC, project web" in reason
    assert "$10,000,000" in reason
    assert state(sessions) == before and no_staging_left(sessions)

    full[110] = usage(1, "f", first=110)[0]
    path = write_csv(tmp_path / "full.csv", full)
    first = import_file(ledger_context, path, now=NOW, chunk_lines=50)
    once = state(sessions)
    again = import_file(ledger_context, path, now=NOW, chunk_lines=50)
    assert (first.accepted, first.duplicates) == (120, 0) and (again.accepted, again.duplicates) == (0, 120)
    assert once[1] == before[1] + 120 and state(sessions) == once and no_staging_left(sessions)


def test_the_same_file_twice_counts_each_event_once(
    ledger_context: Context,
    sessions: sessionmaker[Session], catalog: Catalog, tmp_path: Path
) -> None:
    rows = usage(300, "twice")
    rows[250:270] = [list(row) for row in rows[10:30]]  # 20 ids again, in a later chunk of the same file
    path = write_csv(tmp_path / "usage.csv", rows)

    first = import_file(ledger_context, path, now=NOW, chunk_lines=64)
    once = state(sessions)
    again = import_file(ledger_context, path, now=NOW, chunk_lines=64)

    assert (first.accepted, first.duplicates) == (280, 20)
    assert (again.accepted, again.duplicates) == (0, 300)
    assert state(sessions) == once and once[1] == 280
    distinct = {row[0]: row for row in rows}.values()
    buckets = once[0]
    assert sum(b[6] for b in buckets) == sum(row[3] for row in distinct)  # input tokens, each event once
    assert sum(b[8] for b in buckets) == sum(row[4] for row in distinct)


def test_events_already_pushed_are_counted_once_by_the_import(
    ledger_context: Context,
    sessions: sessionmaker[Session], catalog: Catalog, tmp_path: Path, push_writer: PushWriter
) -> None:
    rows = [row for row in usage(200, "ev") if row[7] == "web"]  # the push token's project
    pushed = rows[:60]
    body = "\n".join(json.dumps({"id": r[0], "created": r[1], "model": r[2], "mode": r[6] or None,
                                 "usage": {"prompt_tokens": r[3], "completion_tokens": r[4],
                                           "prompt_tokens_details": {"cached_tokens": r[5]}}})
                     for r in pushed).encode()
    push_writer.push(body, project="web", now=NOW)

    result = import_file(ledger_context, write_csv(tmp_path / "usage.csv", rows), now=NOW, chunk_lines=25)

    assert result == IngestResult(accepted=len(rows) - 60, duplicates=60)
    buckets, ids = state(sessions)
    assert ids == len(rows)
    assert sum(b[6] for b in buckets) == sum(r[3] for r in rows)
    assert sum(b[9] for b in buckets) == len(rows)
    by_source: dict[str, int] = defaultdict(int)
    for b in buckets:
        by_source[b[1]] += b[9]
    assert by_source == {"push": 60, "import": len(rows) - 60}


def expected_days(sessions: sessionmaker[Session]) -> dict[tuple[Any, ...], list[int]]:
    """Daily totals in ZONE worked out from the buckets themselves."""
    days: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0] * 5)
    with sessions() as session:
        for start, model, mode, project, tin, tout, n, cost in session.execute(
            select(UsageBucket.bucket_start, counted_model, UsageBucket.mode, UsageBucket.project,
                   UsageBucket.input_tokens, UsageBucket.output_tokens, UsageBucket.requests, UsageBucket.cost_nanos)
        ):
            acc = days[(local_day(start, ZONE), model, mode, project)]
            acc[0] += tin
            acc[1] += tout
            acc[2] += n
            if cost is None:
                acc[4] += tin + tout
            else:
                acc[3] += cost
    return dict(days)


def rollup_days(sessions: sessionmaker[Session]) -> dict[tuple[Any, ...], list[int]]:
    days: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0] * 5)
    with sessions() as session:
        for r in daily_rows(session, START - timedelta(days=2), NOW, ZONE):
            acc = days[(r.day, r.model, r.mode, r.project)]
            for i, value in enumerate((r.input_tokens, r.output_tokens, r.requests, r.cost_nanos, r.unpriced_tokens)):
                acc[i] += value
    return dict(days)


def test_rollups_follow_the_buckets_through_imports_that_insert_and_add(
    ledger_context: Context,
    sessions: sessionmaker[Session], catalog: Catalog, tmp_path: Path
) -> None:
    assert rollup_days(sessions) == {}  # the zone is built now: later reads go by the days the triggers mark
    import_file(ledger_context, write_csv(tmp_path / "a.csv", usage(200, "a")), now=NOW, chunk_lines=50)
    after_a = rollup_days(sessions)
    assert after_a == expected_days(sessions)
    assert {day for day, *_ in after_a} >= {date(2026, 11, 9), date(2026, 11, 12)}  # 23:00 UTC on the 9th is local
    assert any(acc[4] for acc in after_a.values()) and any(acc[3] for acc in after_a.values())

    # The same hours, models and projects again under new ids: every bucket is added to (ON CONFLICT DO UPDATE).
    b = write_csv(tmp_path / "b.csv", [[f"b-{n}", *row[1:]] for n, row in enumerate(usage(200, "a"))])
    import_file(ledger_context, b, now=NOW, chunk_lines=50)
    after_b = rollup_days(sessions)
    assert after_b == expected_days(sessions)
    assert all(after_b[key][0] == 2 * after_a[key][0] for key in after_a)

    import_file(ledger_context, b, now=NOW, chunk_lines=50)  # all duplicates: nothing changes
    assert rollup_days(sessions) == after_b


def test_two_imports_of_one_file_at_once_count_it_once(
    ledger_context: Context,
    database_url: str, sessions: sessionmaker[Session], catalog: Catalog, tmp_path: Path
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("two writers at once: PostgreSQL's case (replicas); SQLite has one writer")
    path = write_csv(tmp_path / "usage.csv", usage(3000, "both"))
    start = threading.Barrier(2)
    results: list[IngestResult] = []

    def run() -> None:
        start.wait()
        results.append(import_file(ledger_context, path, now=NOW, chunk_lines=500))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted((r.accepted, r.duplicates) for r in results) == [(0, 3000), (3000, 0)]
    buckets, ids = state(sessions)
    assert ids == 3000 and sum(b[9] for b in buckets) == 3000


MESSY_HEADER = "id,created,timestamp,model,prompt_tokens,completion_tokens,cached_tokens,requests,mode,project,feature,tags\n"


def messy_csv(path: Path, prefix: str) -> Path:
    """Clean rows beside every shape the one pass hands to the careful reader's own checks."""
    start = int(START.timestamp())
    lines = [f"{prefix}-{n},{start + 977 * n},,{[CHEAP, PRICEY, UNPRICED][n % 3]},{1000 + n},{n % 50},{n % 9},,"
             f"{'batch' if n % 4 == 0 else ''},{['web', 'etl'][n % 2]},,\n" for n in range(200)]
    lines += [
        f"{prefix}-iso,,2026-11-11T05:30:00Z,{CHEAP},100,10,0,,,web,,\n",  # an ISO time
        f"{prefix}-tags,{start + 60},,{CHEAP},100,10,0,,,web,,team=a\n",  # tags
        f"{prefix}-spaces,{start + 120},,  {CHEAP}  , 100 , 10 ,0,2,batch, web ,,\n",  # spaces around cells
        f"{prefix}-café,{start + 180},,{CHEAP},100,10,0,,,café,,\n",  # not ASCII
        f'"{prefix}-quoted",{start + 240},,{CHEAP},100,10,0,,,web,"two\nlines",\n',  # a quoted cell over two lines
        "\n",  # an empty line
        f"{prefix}-short,{start + 300},,{CHEAP},100\n",  # fewer cells than the header
        f",{start + 360},,{PRICEY},100,,,,,etl,,\n",  # no id, no completion
        f"{prefix}-plus,+{start + 420},,{CHEAP},+100,1_0,0,,serverless,web,,\n",  # what int() reads
    ]
    path.write_text(MESSY_HEADER + "".join(lines), encoding="utf-8")
    return path


def test_the_one_pass_and_the_careful_passes_make_the_same_ledger(
    ledger_context: Context, sessions: sessionmaker[Session], catalog: Catalog, tmp_path: Path
) -> None:
    phases: dict[str, set[str]] = {"fast": set(), "careful": set()}
    fast = import_file(ledger_context, messy_csv(tmp_path / "a.csv", "a"), now=NOW, chunk_lines=16, source="fast",
                       on_progress=lambda phase, *_: phases["fast"].add(phase))
    careful = import_file(ledger_context, messy_csv(tmp_path / "b.csv", "b"), now=NOW, chunk_lines=16,
                          source="careful", skip_bad=tmp_path / "bad.csv",
                          on_progress=lambda phase, *_: phases["careful"].add(phase))

    assert phases == {"fast": {"importing"}, "careful": {"checking", "importing"}}  # each took the path named
    assert fast == careful == IngestResult(accepted=208, duplicates=0)
    buckets, ids = state(sessions)
    by_source: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for bucket in buckets:
        by_source[bucket[1]].append(bucket[:1] + bucket[2:])
    assert by_source["fast"] == by_source["careful"] and len(by_source["fast"]) > 100
    assert ids == 2 * 207
    with sessions() as session:
        tagged = session.scalars(select(UsageBucket.tags).where(UsageBucket.tags != "")).all()
        features = set(session.scalars(select(UsageBucket.feature)))
    assert tagged == ["team=a", "team=a"] and "two\nlines" in features


def test_ids_that_copy_must_escape_are_counted_once(
    ledger_context: Context, sessions: sessionmaker[Session], catalog: Catalog, tmp_path: Path
) -> None:
    odd = ["back\\slash", "tab\there", "new\nline", "carriage\rreturn", 'quote"d', "plain"]
    rows = [[event_id, *row[1:]] for event_id, row in zip(odd * 3, usage(18, "x"))]
    for n, row in enumerate(rows):
        row[0] = f"{row[0]}-{n}"
    path = write_csv(tmp_path / "odd.csv", rows)

    first = import_file(ledger_context, path, now=NOW, chunk_lines=2)
    again = import_file(ledger_context, path, now=NOW, chunk_lines=2)

    assert (first.accepted, again.duplicates) == (18, 18)
    with sessions() as session:
        assert set(session.scalars(select(SeenEvent.event_id))) == {row[0] for row in rows}


def cells() -> Any:
    """One CSV row of HEADER's columns plus tags: mostly clean, now and then each odd shape a file has."""
    start = int(START.timestamp())
    count = st.one_of(st.integers(0, 10**6).map(str), st.sampled_from(["", " 7", "+3", "1_0", "-1", "x", "٣", "10" * 12]))
    return st.tuples(
        st.one_of(st.uuids().map(str), st.sampled_from(["", "dup-1", "dup-2", "tab\there", "back\\slash", "é"])),
        st.one_of(st.integers(start, start + 5 * 86400).map(str),
                  st.sampled_from([f" {start} ", f"+{start}", "2026-11-11T05:30:00Z", "2026-11-11 05:30", "soon",
                                   "", f"{start}.5", str(start * 1000)])),
        st.one_of(st.sampled_from([CHEAP, PRICEY, UNPRICED]), st.sampled_from([f" {CHEAP}", "", "modèle", "a\tb"])),
        count, count, st.one_of(st.just("0"), count),
        st.sampled_from(["", "", "batch", "serverless", "dedicated", " batch", "bogus"]),
        st.sampled_from(["web", "etl", "", " etl ", "café", "x" * 130, "two\nlines"]),
        st.sampled_from(["", "", "", "team=a", "bad", "k=v,j=w"]),
    ).map(list)


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(cells(), st.integers(-2, 1)), min_size=1, max_size=20))
def test_property_the_one_pass_and_the_careful_passes_agree(
    migrated_sqlite: Path, tmp_path_factory: pytest.TempPathFactory, catalog: Catalog,
    rows: list[tuple[list[str], int]],
) -> None:
    tmp = tmp_path_factory.mktemp("agree")
    path = tmp / "usage.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*HEADER, "tags"])
        for row, extra in rows:  # a row a cell or two short, or one long, now and then
            writer.writerow(row[:extra] if extra < 0 else row + ["more"] * extra)

    def run(name: str, **options: Any) -> tuple[IngestResult | str, Any]:
        shutil.copyfile(migrated_sqlite, tmp / f"{name}.db")
        engine = make_engine(f"sqlite:///{tmp / name}.db")
        sessions = make_sessionmaker(engine)
        try:
            try:
                result: IngestResult | str = import_file(Context(Settings(), engine, sessions, catalog), path,
                                                         now=NOW, chunk_lines=4, **options)
            except IngestRejected as refused:
                result = str(refused)
            with sessions() as session:
                ids = sorted(session.scalars(select(SeenEvent.event_id)))
                prices = {p.id: (p.provider, p.model, p.mode, p.input_rate, p.cached_rate, p.output_rate)
                          for p in session.scalars(select(PriceRecord))}
            # Each ledger numbers its price rows in the order it first met them: compare the prices themselves.
            buckets = sorted(((*b[:-1], prices.get(b[-1])) for b in state(sessions)[0]), key=repr)
            return result, (buckets, ids)
        finally:
            engine.dispose()

    careful, careful_ledger = run("careful", skip_bad=tmp / "bad.csv")
    default, default_ledger = run("default")
    assert isinstance(careful, IngestResult)
    if careful.bad:
        assert isinstance(default, str) and default_ledger == ([], [])  # refused whole, nothing kept
    else:
        assert default == careful and default_ledger == careful_ledger


def test_buckets_a_concurrent_writer_added_meanwhile_send_the_import_the_careful_way(
    ledger_context: Context, database_url: str, sessions: sessionmaker[Session], catalog: Catalog,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("buckets COPY straight into the ledger on PostgreSQL only")
    import_file(ledger_context, write_csv(tmp_path / "a.csv", usage(120, "a")), now=NOW)
    once = state(sessions)[0]
    # As if another writer added these hours between the writer's look and its COPY:
    monkeypatch.setattr(CopyWriter, "_holds", lambda self, span: False)
    phases: list[str] = []
    b = write_csv(tmp_path / "b.csv", [[f"b-{n}", *row[1:]] for n, row in enumerate(usage(120, "a"))])
    result = import_file(ledger_context, b, now=NOW, on_progress=lambda phase, *_: phases.append(phase))

    assert result == IngestResult(accepted=120, duplicates=0) and "checking" in phases  # the careful passes
    twice = state(sessions)[0]
    assert [(*row[:6], *(2 * n for n in row[6:10])) for row in once] == [row[:10] for row in twice]
