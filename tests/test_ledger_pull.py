"""Pulled usage against fake provider servers: paging, idempotency, crashes half-way, retries,
failures recorded per source, and dedicated endpoints' uptime as spend."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from db.models import SourceState, UsageBucket, from_nanos
from db.totals import totals
from jobs.config.catalog import build_catalog
from jobs.config.context import Context
from jobs.config.sections import FieldMap, Source
from jobs.config.settings import Settings
from jobs.usage.pull import PullOutcome, pull_one, pull_sources
from jobs.usage.sources import RetryPolicy
from pricing.catalog import Catalog
from pricing.costs import token_cost
from tests.fakes.http_server import FakeHTTPServer, RecordedRequest, Response
from tests.fakes.openai_usage import FakeOpenAIUsage, UsageEvent
from tests.fakes.together_api import Endpoint, FakeTogether
from tests.test_ledger_ingest import MAESTRO, snapshot

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
NOV_1 = datetime(2026, 11, 1, tzinfo=timezone.utc)
ADMIN_KEY = "sk-admin-test"
OTHER = "deepseek-ai/DeepSeek-V3"  # $1.25 / $1.25 per 1M (overlay)


class Sleeps(list[float]):
    """An injected sleep that only remembers how long it was asked to wait."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def retry(sleeps: Sleeps) -> RetryPolicy:
    return RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, max_total_wait=5, sleep=sleeps)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return build_catalog(Settings())


def usage_events() -> list[UsageEvent]:
    """Three weeks of usage of two models, two projects, batch and not, over many hours."""
    events = []
    for n in range(120):
        at = NOV_1 + timedelta(hours=n * 3 + 1, minutes=n % 60)
        events.append(
            UsageEvent(
                at,
                MAESTRO if n % 3 else OTHER,
                input_tokens=1000 + n,
                output_tokens=200 + 2 * n,
                input_cached_tokens=0,
                num_model_requests=1 + n % 4,
                project_id="proj_web" if n % 2 else "proj_etl",
                api_key_id="key_a",
                batch=n % 5 == 0,
            )
        )
    return events


def expected_by_model(events: list[UsageEvent], catalog: Catalog) -> dict[str, tuple[int, int, int, Decimal]]:
    """The oracle: tokens, requests and cost per model, summed event by event."""
    out: dict[str, tuple[int, int, int, Decimal]] = {}
    for e in events:
        price = catalog.price_of(e.model, NOV_1)
        assert price is not None
        if e.batch:
            price = price.batch()
            assert price is not None
        tin, tout, n, cost = out.get(e.model, (0, 0, 0, Decimal(0)))
        out[e.model] = (tin + e.input_tokens, tout + e.output_tokens, n + e.num_model_requests,
                        cost + token_cost(price, e.input_tokens, e.output_tokens))
    return out


def ledger_by_model(sessions: sessionmaker[Session]) -> dict[str, tuple[int, int, int, Decimal]]:
    with sessions() as session:
        return {g.key: (g.input_tokens, g.output_tokens, g.requests, g.cost) for g in totals(session, None, None, "model")}  # type: ignore[misc]


@pytest.fixture
def openai_api() -> Iterator[FakeOpenAIUsage]:
    with FakeOpenAIUsage(admin_key=ADMIN_KEY, events=usage_events(), clock=NOW.timestamp) as api:
        yield api


def openai_source(api: FakeOpenAIUsage, **changes: Any) -> Source:
    values: dict[str, Any] = dict(
        name="openai", kind="openai_usage", base_url=api.url, api_key_env="OPENAI_ADMIN_KEY",
        overlap_hours=6, start=date(2026, 11, 1), timeout_seconds=2,
    )
    return Source(**{**values, **changes})


@pytest.fixture(autouse=True)
def _admin_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_ADMIN_KEY", ADMIN_KEY)
    monkeypatch.setenv("TOGETHER_TEST_KEY", "together-test-key")


def pull(sessions: sessionmaker[Session], settings: Settings, source: Source, catalog: Catalog, now: datetime = NOW,
         retry: RetryPolicy | None = None, **kwargs: Any) -> PullOutcome:
    """One source's pull through pull_one (which records the outcome), with pull-function options."""
    context = Context(settings, sessions.kw["bind"], sessions, catalog)
    return pull_one(context, source, now, retry=retry, **kwargs)


def state_of(sessions: sessionmaker[Session], name: str) -> SourceState | None:
    with sessions() as session:
        return session.get(SourceState, name)


# -- OpenAI usage ------------------------------------------------------------------------------


def test_openai_usage_pull_follows_every_page_and_matches_the_usage(
    sessions: sessionmaker[Session], catalog: Catalog, openai_api: FakeOpenAIUsage, retry: RetryPolicy
) -> None:
    source = openai_source(openai_api)
    outcome = pull(sessions, Settings(sources=[source]), source, catalog, retry=retry, page_limit=24)

    assert outcome.ok, outcome.error
    first = openai_api.requests[0]
    assert first.path == "/v1/organization/usage/completions" and first.bearer_token == ADMIN_KEY
    assert first.query_value("bucket_width") == "1h" and first.query_value("start_time") == str(int(NOV_1.timestamp()))
    assert sorted(first.query_values("group_by")) == ["api_key_id", "batch", "model", "project_id"]
    assert len(openai_api.requests) == outcome.result.pages == 20  # 19 days and 12 hours, 24 buckets a page
    assert ledger_by_model(sessions) == expected_by_model(usage_events(), catalog)
    by_mode = {g[0]: g for g in snapshot(sessions, "mode")}
    assert by_mode["batch"][4] == sum(e.num_model_requests for e in usage_events() if e.batch)
    state = state_of(sessions, "openai")
    assert state is not None and state.cursor == NOW and state.last_success == NOW


def test_pulling_the_same_window_again_changes_nothing(
    sessions: sessionmaker[Session], catalog: Catalog, openai_api: FakeOpenAIUsage, retry: RetryPolicy
) -> None:
    source = openai_source(openai_api)
    settings = Settings(sources=[source])
    pull(sessions, settings, source, catalog, retry=retry)
    once = snapshot(sessions), snapshot(sessions, "project")
    with sessions() as session:
        rows = len(session.scalars(select(UsageBucket)).all())

    pull(sessions, settings, source, catalog, retry=retry)  # same now: the overlap re-read
    pull(sessions, settings, source, catalog, now=NOW + timedelta(hours=3), retry=retry)

    assert (snapshot(sessions), snapshot(sessions, "project")) == once
    with sessions() as session:
        assert len(session.scalars(select(UsageBucket)).all()) == rows
    later = openai_api.requests[-1]
    assert later.query_value("start_time") == str(int((NOW - timedelta(hours=6)).timestamp()))


def test_late_usage_inside_the_overlap_is_picked_up_and_corrections_replace(
    sessions: sessionmaker[Session], catalog: Catalog, openai_api: FakeOpenAIUsage, retry: RetryPolicy
) -> None:
    source = openai_source(openai_api)
    settings = Settings(sources=[source])
    pull(sessions, settings, source, catalog, retry=retry)
    late = UsageEvent(NOW - timedelta(hours=2), MAESTRO, input_tokens=5000, output_tokens=0, project_id="proj_web")
    openai_api.add_events(late)
    pull(sessions, settings, source, catalog, now=NOW + timedelta(minutes=15), retry=retry)
    assert ledger_by_model(sessions) == expected_by_model(usage_events() + [late], catalog)

    openai_api.set_events(usage_events())  # the provider dropped it again
    pull(sessions, settings, source, catalog, now=NOW + timedelta(minutes=30), retry=retry)
    assert ledger_by_model(sessions) == expected_by_model(usage_events(), catalog)


class Crash(Exception):
    pass


def crash_after(page: int) -> Any:
    def after_page(n: int) -> None:
        if n == page:
            raise Crash(f"killed after page {n}")

    return after_page


def test_a_pull_killed_half_way_then_retried_equals_one_clean_pull(
    sessions: sessionmaker[Session], catalog: Catalog, openai_api: FakeOpenAIUsage, retry: RetryPolicy
) -> None:
    source = openai_source(openai_api)
    settings = Settings(sources=[source])

    crashed = pull(sessions, settings, source, catalog, retry=retry, page_limit=24, after_page=crash_after(7))
    assert not crashed.ok and "killed after page 7" in (crashed.error or "")
    partial = ledger_by_model(sessions)
    assert partial and partial != expected_by_model(usage_events(), catalog)
    state = state_of(sessions, "openai")
    assert state is not None and state.cursor is None and state.last_error_at == NOW

    retried = pull(sessions, settings, source, catalog, now=NOW + timedelta(minutes=5), retry=retry, page_limit=24)
    assert retried.ok
    assert ledger_by_model(sessions) == expected_by_model(usage_events(), catalog)


def test_a_crash_in_a_repeat_pull_leaves_no_double_counting(
    sessions: sessionmaker[Session], catalog: Catalog, openai_api: FakeOpenAIUsage, retry: RetryPolicy
) -> None:
    source = openai_source(openai_api, overlap_hours=24 * 10)
    settings = Settings(sources=[source])
    pull(sessions, settings, source, catalog, retry=retry, page_limit=24)
    clean = snapshot(sessions), snapshot(sessions, "project"), snapshot(sessions, "mode")

    for page in (1, 4, 9):
        outcome = pull(sessions, settings, source, catalog, retry=retry, page_limit=24, after_page=crash_after(page))
        assert not outcome.ok
        assert (snapshot(sessions), snapshot(sessions, "project"), snapshot(sessions, "mode")) == clean


def test_the_server_failing_mid_paging_is_retried_then_recorded_and_a_retry_completes(
    sessions: sessionmaker[Session], catalog: Catalog, openai_api: FakeOpenAIUsage, retry: RetryPolicy, sleeps: Sleeps
) -> None:
    source = openai_source(openai_api)
    settings = Settings(sources=[source])

    def go_down(n: int) -> None:
        if n == 5:
            openai_api.set_down(True, status=503)

    failed = pull(sessions, settings, source, catalog, retry=retry, page_limit=24, after_page=go_down)
    assert not failed.ok and "503" in (failed.error or "") and "gave up after 3 attempt(s)" in (failed.error or "")
    assert len(sleeps) == 2  # three attempts at page 6, two waits, no real sleeping
    state = state_of(sessions, "openai")
    assert state is not None and state.cursor is None and "503" in (state.last_error or "")

    openai_api.set_down(False)
    assert pull(sessions, settings, source, catalog, retry=retry, page_limit=24).ok
    assert ledger_by_model(sessions) == expected_by_model(usage_events(), catalog)


@pytest.mark.parametrize("fault", ["rate_limit", "server_error", "garbage", "wrong_schema", "timeout", "drop"])
def test_a_transient_fault_is_retried(
    sessions: sessionmaker[Session], catalog: Catalog, openai_api: FakeOpenAIUsage, retry: RetryPolicy, sleeps: Sleeps,
    fault: str,
) -> None:
    if fault == "rate_limit":
        openai_api.fail_next(status=429, retry_after=2)
    elif fault == "server_error":
        openai_api.fail_next(status=500)
    elif fault == "garbage":
        openai_api.garbage_next()
    elif fault == "wrong_schema":
        openai_api.wrong_schema_next()
    elif fault == "timeout":
        openai_api.hang_next(3)
    else:
        openai_api.drop_next()
    source = openai_source(openai_api, timeout_seconds=0.5)
    outcome = pull(sessions, Settings(sources=[source]), source, catalog, retry=retry)

    assert outcome.ok, outcome.error
    assert len(sleeps) == 1
    if fault == "rate_limit":
        assert sleeps == [2.0]  # Retry-After honoured
    assert ledger_by_model(sessions) == expected_by_model(usage_events(), catalog)


def test_a_source_answering_the_wrong_schema_fails_and_changes_nothing(
    sessions: sessionmaker[Session], catalog: Catalog, openai_api: FakeOpenAIUsage, retry: RetryPolicy
) -> None:
    source = openai_source(openai_api)
    settings = Settings(sources=[source])
    pull(sessions, settings, source, catalog, retry=retry)
    before = snapshot(sessions)

    openai_api.wrong_schema_next(times=3)
    outcome = pull(sessions, settings, source, catalog, now=NOW + timedelta(hours=1), retry=retry)

    assert not outcome.ok and "unexpected answer" in (outcome.error or "")
    assert snapshot(sessions) == before
    state = state_of(sessions, "openai")
    assert state is not None and state.cursor == NOW and state.last_success == NOW
    assert state.last_error_at == NOW + timedelta(hours=1)


def test_a_retry_after_beyond_the_budget_gives_up_without_waiting(
    sessions: sessionmaker[Session], catalog: Catalog, openai_api: FakeOpenAIUsage, sleeps: Sleeps
) -> None:
    openai_api.fail_next(status=429, retry_after=3600)
    source = openai_source(openai_api)
    policy = RetryPolicy(attempts=5, max_total_wait=30, sleep=sleeps)
    outcome = pull(sessions, Settings(sources=[source]), source, catalog, retry=policy)
    assert not outcome.ok and "budget" in (outcome.error or "")
    assert sleeps == []


def test_a_bad_key_fails_at_once(
    sessions: sessionmaker[Session], catalog: Catalog, openai_api: FakeOpenAIUsage, retry: RetryPolicy,
    monkeypatch: pytest.MonkeyPatch, sleeps: Sleeps,
) -> None:
    monkeypatch.setenv("OPENAI_ADMIN_KEY", "sk-wrong")
    source = openai_source(openai_api)
    outcome = pull(sessions, Settings(sources=[source]), source, catalog, retry=retry)
    assert not outcome.ok and "HTTP 401" in (outcome.error or "") and sleeps == []


def test_one_failing_source_does_not_stop_the_others(
    engine: Engine, sessions: sessionmaker[Session], catalog: Catalog, openai_api: FakeOpenAIUsage, retry: RetryPolicy
) -> None:
    broken = openai_source(openai_api, name="broken", api_key_env="NOT_SET_ANYWHERE")
    good = openai_source(openai_api)
    outcomes = pull_sources(Context(Settings(sources=[broken, good]), engine, sessions, catalog), now=NOW, retry=retry)

    assert [(o.source, o.ok) for o in outcomes] == [("broken", False), ("openai", True)]
    assert "NOT_SET_ANYWHERE is not set" in (outcomes[0].error or "")
    assert ledger_by_model(sessions) == expected_by_model(usage_events(), catalog)
    broken_state = state_of(sessions, "broken")
    assert broken_state is not None and broken_state.last_success is None and broken_state.last_error


def test_day_buckets(sessions: sessionmaker[Session], catalog: Catalog, openai_api: FakeOpenAIUsage, retry: RetryPolicy) -> None:
    source = openai_source(openai_api, bucket_width="1d")
    assert pull(sessions, Settings(sources=[source]), source, catalog, retry=retry).ok
    assert ledger_by_model(sessions) == expected_by_model(usage_events(), catalog)
    with sessions() as session:
        assert {b.width for b in session.scalars(select(UsageBucket))} == {"1d"}


# -- generic JSON ------------------------------------------------------------------------------


class FakeGateway(FakeHTTPServer):
    """An in-house collector: `GET /usage` answers {"result": {"items": [...]}}, unfiltered."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        super().__init__()
        self.items = items

    def handle(self, request: RecordedRequest) -> Response:
        return Response.json({"result": {"items": self.items}})


GATEWAY_FIELDS = FieldMap(
    records="result.items", time="ts", model="llm", input_tokens="usage.in", output_tokens="usage.out",
    project="team", event_id="id",
)


def gateway_items() -> list[dict[str, Any]]:
    items = []
    for n in range(40):
        at = NOV_1 + timedelta(hours=n * 7, minutes=13)
        items.append({"id": f"r{n}", "ts": at.isoformat(), "llm": MAESTRO if n % 2 else OTHER,
                      "usage": {"in": 100 * n, "out": 10 * n}, "team": "web" if n % 3 else "etl"})
    items.append({"id": "r0", **{k: v for k, v in items[0].items() if k != "id"}})  # a repeat
    items.append({"id": "old", "ts": "2026-10-01T00:00:00Z", "llm": MAESTRO, "usage": {"in": 9, "out": 9}})
    return items


def test_generic_json_pull_maps_fields_and_is_idempotent(
    sessions: sessionmaker[Session], catalog: Catalog, retry: RetryPolicy
) -> None:
    with FakeGateway(gateway_items()) as gateway:
        source = Source(name="gw", kind="generic_json", base_url=f"{gateway.origin}/usage", fields=GATEWAY_FIELDS,
                        start=date(2026, 11, 1))
        settings = Settings(sources=[source])
        assert pull(sessions, settings, source, catalog, retry=retry).ok
        once = snapshot(sessions, "project")
        assert pull(sessions, settings, source, catalog, now=NOW + timedelta(hours=1), retry=retry).ok
        assert snapshot(sessions, "project") == once
        assert gateway.requests[0].query_value("start_time") == str(int(NOV_1.timestamp()))

    items = gateway_items()[:40]  # no repeat, nothing before the window
    tokens = {t: sum(i["usage"]["in"] for i in items if i["team"] == t) for t in ("web", "etl")}
    assert {key: tin for key, tin, *_ in once} == tokens


def test_generic_json_with_a_bad_record_fails_and_changes_nothing(
    sessions: sessionmaker[Session], catalog: Catalog, retry: RetryPolicy
) -> None:
    items = gateway_items()
    with FakeGateway(items) as gateway:
        source = Source(name="gw", kind="generic_json", base_url=f"{gateway.origin}/usage", fields=GATEWAY_FIELDS,
                        start=date(2026, 11, 1))
        settings = Settings(sources=[source])
        pull(sessions, settings, source, catalog, retry=retry)
        before = snapshot(sessions)
        gateway.items = items + [{"id": "neg", "ts": NOW.isoformat(), "llm": MAESTRO, "usage": {"in": -3, "out": 1}}]
        outcome = pull(sessions, settings, source, catalog, now=NOW + timedelta(hours=1), retry=retry)
    assert not outcome.ok and "negative" in (outcome.error or "")
    assert snapshot(sessions) == before


# -- together.ai dedicated endpoints -------------------------------------------------------------

H200 = "8x_nvidia_h200_140gb_sxm"  # 66.67 cents a minute in the fake's sample hardware


def together_source(api: FakeTogether) -> Source:
    return Source(name="endpoints", kind="together_endpoints", base_url=api.url, api_key_env="TOGETHER_TEST_KEY",
                  overlap_hours=24, timeout_seconds=2)


def endpoint_rows(sessions: sessionmaker[Session]) -> list[tuple[datetime, str, int, int | None]]:
    with sessions() as session:
        return [
            (b.bucket_start, b.tags, b.uptime_minutes, b.cost_nanos)
            for b in session.scalars(select(UsageBucket).order_by(UsageBucket.tags, UsageBucket.bucket_start))
        ]


def test_a_running_endpoint_shows_as_spend_per_minute_of_uptime(
    sessions: sessionmaker[Session], catalog: Catalog, retry: RetryPolicy
) -> None:
    endpoints = [
        Endpoint("endpoint-aaaa0001", model=OTHER, hardware=H200, name="devuser/ds-v3", state="STARTED"),
        Endpoint("endpoint-aaaa0002", model=OTHER, hardware=H200, name="devuser/idle", state="STOPPED"),
        Endpoint("endpoint-aaaa0003", model=MAESTRO, type="serverless", owner="together", name=MAESTRO),
        Endpoint("endpoint-aaaa0004", model=MAESTRO, hardware="4x_mystery_gpu", name="devuser/odd", state="STARTED",
                 min_replicas=2),
    ]
    t0 = datetime(2026, 11, 20, 10, 30, 40, tzinfo=timezone.utc)
    with FakeTogether(api_key="together-test-key", endpoints=endpoints) as api:
        source = together_source(api)
        settings = Settings(sources=[source])
        assert pull(sessions, settings, source, catalog, now=t0, retry=retry).ok
        assert endpoint_rows(sessions) == []  # the first observation starts the clock
        assert pull(sessions, settings, source, catalog, now=t0 + timedelta(minutes=90), retry=retry).ok
        once = endpoint_rows(sessions)
        assert pull(sessions, settings, source, catalog, now=t0 + timedelta(minutes=90), retry=retry).ok
        assert endpoint_rows(sessions) == once  # the same observation twice counts once
        details = [r.path for r in api.requests if r.path.startswith("/v1/endpoints/")]

    ten, eleven = datetime(2026, 11, 20, 10, tzinfo=timezone.utc), datetime(2026, 11, 20, 11, tzinfo=timezone.utc)
    per_minute = Decimal("0.6667")
    assert once == [
        (ten, f"endpoint=devuser/ds-v3,hardware={H200}", 30, int(30 * per_minute * 10**9)),
        (eleven, f"endpoint=devuser/ds-v3,hardware={H200}", 60, int(60 * per_minute * 10**9)),
        (ten, "endpoint=devuser/odd,hardware=4x_mystery_gpu", 60, None),  # 2 replicas, unpriced hardware
        (eleven, "endpoint=devuser/odd,hardware=4x_mystery_gpu", 120, None),
    ]
    assert "/v1/endpoints/endpoint-aaaa0002" not in details  # stopped: no need to look
    with sessions() as session:
        [dedicated] = totals(session, None, None, "mode")
    assert dedicated.key == "dedicated" and dedicated.uptime_minutes == 270
    assert dedicated.cost == Decimal("60.003") and dedicated.unpriced_tokens == 0
    assert dedicated.unpriced_minutes == 180  # the mystery hardware: shown, not priced at $0


def test_an_endpoint_is_counted_from_its_creation_and_not_after_it_stops(
    sessions: sessionmaker[Session], catalog: Catalog, retry: RetryPolicy
) -> None:
    t0 = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)
    with FakeTogether(api_key="together-test-key", endpoints=[]) as api:
        source = together_source(api)
        settings = Settings(sources=[source])
        pull(sessions, settings, source, catalog, now=t0, retry=retry)
        api.endpoints = [Endpoint("endpoint-new", model=OTHER, hardware=H200, name="new",
                                  created_at=(t0 + timedelta(minutes=40)).isoformat())]
        pull(sessions, settings, source, catalog, now=t0 + timedelta(minutes=45), retry=retry)
        api.endpoints = [Endpoint("endpoint-new", model=OTHER, hardware=H200, name="new", state="STOPPED")]
        pull(sessions, settings, source, catalog, now=t0 + timedelta(minutes=59), retry=retry)
    assert [minutes for _, _, minutes, _ in endpoint_rows(sessions)] == [5]


def test_endpoint_source_failure_changes_nothing_and_moves_no_cursor(
    sessions: sessionmaker[Session], catalog: Catalog, retry: RetryPolicy
) -> None:
    t0 = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)
    with FakeTogether(api_key="together-test-key") as api:
        source = together_source(api)
        settings = Settings(sources=[source])
        pull(sessions, settings, source, catalog, now=t0, retry=retry)
        api.fail_next("/v1/hardware", status=500, times=3)
        failed = pull(sessions, settings, source, catalog, now=t0 + timedelta(minutes=30), retry=retry)
        assert not failed.ok and endpoint_rows(sessions) == []
        assert pull(sessions, settings, source, catalog, now=t0 + timedelta(minutes=60), retry=retry).ok
    # The sample's running H200 endpoint: the whole hour since the last good observation.
    assert [(minutes, from_nanos(cost)) for _, _, minutes, cost in endpoint_rows(sessions)] == [(60, Decimal("40.002"))]
