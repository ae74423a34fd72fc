"""together.ai beyond serverless: batch jobs (through the real `together` SDK), fine-tunes, GPU
clusters and dedicated endpoints' running replicas, pulled from the fake together server into the
ledger, once each; and the API failing in every way the issue names."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from together import Together

from db.models import SourceState, UsageBucket, from_nanos
from db.totals import totals
from jobs.config.catalog import build_catalog
from jobs.config.context import Context
from jobs.config.sections import ClusterRate, Source
from jobs.config.settings import Settings
from jobs.usage.pull import PullOutcome, pull_one
from jobs.usage.sources import RetryPolicy
from pricing.catalog import Catalog
from pricing.costs import token_cost
from tests.fakes.together_api import BatchJob, Endpoint, FakeTogether, FineTune, GpuCluster, batch_output_line

KEY = "together-test-key"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
LLAMA = "meta-llama/Llama-3.3-70B-Instruct-Turbo"  # $0.88 / $0.88 per 1M in the overlay
DEEPSEEK = "deepseek-ai/DeepSeek-V3"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return build_catalog(Settings())


@pytest.fixture
def retry() -> RetryPolicy:
    return RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02, max_total_wait=5, sleep=lambda s: None)


@pytest.fixture
def together() -> Iterator[FakeTogether]:
    with FakeTogether(api_key=KEY, endpoints=[]) as fake:
        yield fake


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOGETHER_TEST_KEY", KEY)


def source(api: FakeTogether, kind: str, **changes: Any) -> Source:
    values: dict[str, Any] = dict(name=kind.removeprefix("together_"), kind=kind, base_url=api.url,
                                  api_key_env="TOGETHER_TEST_KEY", start=date(2026, 11, 1), timeout_seconds=2)
    return Source(**{**values, **changes})


def pull(sessions: sessionmaker[Session], src: Source, catalog: Catalog, retry: RetryPolicy, now: datetime = NOW,
         settings: Settings | None = None) -> PullOutcome:
    context = Context(settings or Settings(sources=[src]), sessions.kw["bind"], sessions, catalog)
    return pull_one(context, src, now, retry=retry)


def ledger(sessions: sessionmaker[Session]) -> list[tuple[Any, ...]]:
    with sessions() as session:
        return [(b.bucket_start, b.source, b.model, b.mode, b.tags, b.input_tokens, b.cached_input_tokens,
                 b.output_tokens, b.requests, b.uptime_minutes, b.cost_nanos)
                for b in session.scalars(select(UsageBucket).order_by(UsageBucket.model, UsageBucket.tags,
                                                                      UsageBucket.bucket_start))]


def state(sessions: sessionmaker[Session], name: str) -> SourceState:
    with sessions() as session:
        found = session.get(SourceState, name)
        assert found is not None
        return found


def batch_price(catalog: Catalog, model: str, at: datetime) -> Any:
    price = catalog.price_of(model, at)
    assert price is not None
    batch = price.batch()
    assert batch is not None and batch.input < price.input
    return batch


# -- batch jobs ---------------------------------------------------------------------------------


def test_a_batch_run_with_the_together_sdk_shows_in_the_ledger_once(
    sessions: sessionmaker[Session], catalog: Catalog, together: FakeTogether, retry: RetryPolicy, tmp_path: Path
) -> None:
    requests = [{"custom_id": f"req-{n}", "body": {"model": LLAMA if n % 3 else DEEPSEEK, "max_tokens": 200,
                                                  "messages": [{"role": "user", "content": "summarise " * (n + 1)}]}}
                for n in range(30)]
    input_file = tmp_path / "batch_input.jsonl"
    input_file.write_text("".join(json.dumps(r) + "\n" for r in requests))
    client = Together(api_key=KEY, base_url=together.origin, max_retries=0)

    uploaded = client.files.upload(file=input_file, purpose="batch-api", check=False)
    created = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions")
    assert created.job is not None and created.job.id and created.job.status == "IN_PROGRESS"
    src = source(together, "together_batches")
    assert pull(sessions, src, catalog, retry, NOW - timedelta(hours=1)).ok
    assert ledger(sessions) == []  # still running: nothing billed yet

    finished = datetime(2026, 11, 20, 10, 42, tzinfo=timezone.utc)
    together.complete_batch(created.job.id, at=finished)
    job = client.batches.retrieve(created.job.id)
    assert job.status == "COMPLETED" and job.output_file_id
    assert [b.id for b in client.batches.list()] == [created.job.id]
    with client.files.with_streaming_response.content(id=job.output_file_id) as response:
        downloaded = [json.loads(line) for line in response.iter_lines() if line]
    expected: dict[str, list[int]] = {}
    for line in downloaded:  # the oracle: what the SDK itself downloaded
        body = line["response"]["body"]
        sums = expected.setdefault(body["model"], [0, 0, 0])
        sums[0] += body["usage"]["prompt_tokens"]
        sums[1] += body["usage"]["completion_tokens"]
        sums[2] += 1
    assert len(downloaded) == 30 and set(expected) == {LLAMA, DEEPSEEK}

    outcome = pull(sessions, src, catalog, retry)
    assert outcome.ok, outcome.error
    once = ledger(sessions)
    hour = datetime(2026, 11, 20, 10, tzinfo=timezone.utc)
    assert once == sorted(
        (hour, "batches", model, "batch", f"batch={created.job.id}", tin, 0, tout, n,
         0, int((token_cost(batch_price(catalog, model, finished), tin, tout) * 10**9).to_integral_value()))
        for model, (tin, tout, n) in expected.items()
    )
    with sessions() as session:
        [batch] = totals(session, None, None, "mode")
    assert batch.key == "batch" and batch.requests == 30 and batch.cost is not None and batch.cost > 0

    for later in (NOW, NOW + timedelta(minutes=15), NOW + timedelta(days=1)):  # re-pulls, the job still listed
        assert pull(sessions, src, catalog, retry, later).ok
    assert ledger(sessions) == once
    downloads = [r for r in together.requests if r.path.endswith("/content") and r.bearer_token == KEY]
    assert len(downloads) == 1 + 1, "the SDK's download and one pull: a counted job is not fetched again"


def output_file(together: FakeTogether, lines: list[bytes]) -> str:
    return together.add_file(b"\n".join(lines) + b"\n").id


def good_lines(n: int, model: str = LLAMA, prompt: int = 1000, completion: int = 100) -> list[bytes]:
    return [json.dumps(batch_output_line(f"r{i}", model, prompt + i, completion, 0)).encode() for i in range(n)]


def test_broken_lines_are_counted_skipped_and_said(
    sessions: sessionmaker[Session], catalog: Catalog, together: FakeTogether, retry: RetryPolicy
) -> None:
    failed = json.dumps({"id": "x", "custom_id": "bad-request", "response": {"status_code": 400, "body": {}},
                         "error": {"message": "invalid"}}).encode()
    negative = json.dumps(batch_output_line("neg", LLAMA, -5, 10, 0)).encode()
    no_usage = json.dumps({"custom_id": "u", "response": {"status_code": 200, "body": {"model": LLAMA}}}).encode()
    lines = good_lines(6) + [b'{"custom_id": "cut', failed, negative, b"", b"\xff\xfe not text", no_usage,
                             b"x" * (9 << 20)]
    finished = datetime(2026, 11, 20, 9, 5, tzinfo=timezone.utc)
    together.batches = [BatchJob("batch-broken", output_file_id=output_file(together, lines), model_id=LLAMA,
                                 completed_at=finished)]
    src = source(together, "together_batches")
    outcome = pull(sessions, src, catalog, retry)

    assert outcome.ok and outcome.result is not None
    [note] = outcome.result.notes
    assert note.startswith("batch batch-broken: 5 of 12 lines broken and skipped (line 7: not valid JSON")
    assert "line 9: prompt_tokens is negative (-5)" in note and "line 11: not valid UTF-8 text" in note
    assert state(sessions, "batches").last_note == note
    [row] = ledger(sessions)
    assert row[5] == sum(1000 + i for i in range(6)) and row[7] == 600 and row[8] == 6  # the good six, once


def test_a_download_cut_short_is_retried_and_counted_once(
    sessions: sessionmaker[Session], catalog: Catalog, together: FakeTogether, retry: RetryPolicy
) -> None:
    file_id = output_file(together, good_lines(2000))
    together.batches = [BatchJob("batch-cut", output_file_id=file_id, completed_at=NOW - timedelta(hours=2))]
    together.cut_body_next(f"/v1/files/{file_id}/content", after_bytes=150_000)
    src = source(together, "together_batches")

    assert pull(sessions, src, catalog, retry).ok
    [row] = ledger(sessions)
    assert row[5] == sum(1000 + i for i in range(2000)) and row[8] == 2000
    assert sum(r.path.endswith("/content") for r in together.requests) == 2


@pytest.mark.parametrize("fault", ["401", "429", "500", "hang"])
def test_the_batch_api_failing_is_a_recorded_failure_that_changes_nothing(
    sessions: sessionmaker[Session], catalog: Catalog, together: FakeTogether, retry: RetryPolicy, fault: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    together.batches = [BatchJob("batch-1", output_file_id=output_file(together, good_lines(3)),
                                 completed_at=NOW - timedelta(hours=1))]
    src = source(together, "together_batches", timeout_seconds=0.3)
    if fault == "401":
        monkeypatch.setenv("TOGETHER_TEST_KEY", "wrong-key")
    elif fault == "hang":
        together.hang_next(2, "/v1/batches", times=3)
    else:
        together.fail_next("/v1/batches", status=int(fault), times=3)

    failed = pull(sessions, src, catalog, retry)

    assert not failed.ok and ledger(sessions) == []
    reason = {"401": "GET 127.0.0.1", "429": "HTTP 429", "500": "HTTP 500", "hang": "timed out"}[fault]
    assert reason in (failed.error or "") and (fault == "401") == ("gave up" not in (failed.error or ""))
    if fault == "401":
        assert "HTTP 401 (Invalid API key provided" in (failed.error or "")
        assert "wrong-key" not in (failed.error or "")
    recorded = state(sessions, "batches")
    assert recorded.last_error == failed.error and recorded.cursor is None

    monkeypatch.setenv("TOGETHER_TEST_KEY", KEY)
    together.clear_faults()
    assert pull(sessions, src, catalog, retry, NOW + timedelta(minutes=15)).ok
    assert pull(sessions, src, catalog, retry, NOW + timedelta(minutes=30)).ok
    assert [row[8] for row in ledger(sessions)] == [3]


def test_a_job_whose_file_fails_waits_while_the_others_are_counted(
    sessions: sessionmaker[Session], catalog: Catalog, together: FakeTogether, retry: RetryPolicy
) -> None:
    ok_file, bad_file = output_file(together, good_lines(4)), output_file(together, good_lines(5, DEEPSEEK))
    together.batches = [
        BatchJob("batch-ok", output_file_id=ok_file, completed_at=NOW - timedelta(hours=3)),
        BatchJob("batch-later", output_file_id=bad_file, completed_at=NOW - timedelta(hours=2)),
        BatchJob("batch-running", status="IN_PROGRESS", progress=40.0),
        BatchJob("batch-old", output_file_id=ok_file, completed_at=datetime(2026, 10, 30, tzinfo=timezone.utc)),
        BatchJob("batch-cancelled", status="CANCELLED", output_file_id=output_file(together, good_lines(1)),
                 completed_at=NOW - timedelta(hours=1)),
        BatchJob("batch-failed-empty", status="FAILED", error="input file invalid"),
    ]
    together.fail_next(f"/v1/files/{bad_file}/content", status=503, times=3)
    src = source(together, "together_batches")

    first = pull(sessions, src, catalog, retry)
    assert not first.ok and "batch batch-later: output file" in (first.error or "") and "503" in (first.error or "")
    assert sorted(row[4] for row in ledger(sessions)) == ["batch=batch-cancelled", "batch=batch-ok"]

    assert pull(sessions, src, catalog, retry, NOW + timedelta(minutes=15)).ok
    counted = ledger(sessions)
    assert sorted(row[4] for row in counted) == ["batch=batch-cancelled", "batch=batch-later", "batch=batch-ok"]
    assert pull(sessions, src, catalog, retry, NOW + timedelta(minutes=30)).ok
    assert ledger(sessions) == counted


# -- fine-tuning jobs -----------------------------------------------------------------------------


def test_fine_tunes_are_training_spend_on_the_day_they_finished(
    sessions: sessionmaker[Session], catalog: Catalog, together: FakeTogether, retry: RetryPolicy
) -> None:
    done_at = datetime(2026, 11, 18, 23, 40, tzinfo=timezone.utc)
    together.fine_tunes = [
        FineTune("ft-done", total_price=12_345_678_900, updated_at="2026-11-19T02:00:00Z", completed_event_at=done_at),
        FineTune("ft-running", status="running", total_price=5_000_000_000),
        FineTune("ft-cancelled", status="cancelled", total_price=7_000_000_000),
        FineTune("ft-no-price", total_price=None, updated_at="2026-11-19T05:00:00Z"),
        FineTune("ft-last-month", total_price=1_000_000_000, updated_at="2026-10-20T05:00:00Z"),
    ]
    src = source(together, "together_fine_tunes")
    outcome = pull(sessions, src, catalog, retry)

    assert outcome.ok and outcome.result is not None
    assert outcome.result.notes == ("fine-tune ft-no-price: completed without a usable total_price; not counted yet",)
    [row] = ledger(sessions)
    assert row == (datetime(2026, 11, 18, 23, tzinfo=timezone.utc), "fine_tunes",
                   "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference", "training", "fine_tune=ft-done",
                   0, 0, 0, 0, 0, 12_345_678_900)

    together.fine_tunes[1] = FineTune("ft-running", total_price=5_000_000_000, updated_at="2026-11-20T13:00:00Z")
    for later in (NOW + timedelta(hours=2), NOW + timedelta(hours=3)):
        assert pull(sessions, src, catalog, retry, later).ok
    with sessions() as session:
        [training] = totals(session, None, None, "mode")
    assert training.key == "training" and training.cost == Decimal("17.3456789")
    assert training.tokens == 0 and training.unpriced_tokens == 0


# -- GPU clusters -------------------------------------------------------------------------------


def test_a_cluster_is_billed_per_gpu_hour_while_it_is_up(
    sessions: sessionmaker[Session], catalog: Catalog, together: FakeTogether, retry: RetryPolicy
) -> None:
    together.clusters = [
        GpuCluster("c-train", gpu_type="H100_SXM", num_gpus=16, cluster_name="train-a"),
        GpuCluster("c-paused", gpu_type="H100_SXM", num_gpus=8, status="Paused"),
        GpuCluster("c-new", gpu_type="H200_SXM", num_gpus=8, status="WaitingForDataPlaneNodes"),
        GpuCluster("c-l40", gpu_type="L40_PCIE", num_gpus=8, cluster_name="eval"),
    ]
    src = source(together, "together_clusters", start=None)
    settings = Settings(sources=[src], cluster_rates=[ClusterRate(gpu_type="H100_SXM", hourly=Decimal("2.50"))])
    t0 = datetime(2026, 11, 20, 9, 30, tzinfo=timezone.utc)
    assert pull(sessions, src, catalog, retry, t0, settings).ok
    assert ledger(sessions) == []  # the first observation starts the clock
    outcome = pull(sessions, src, catalog, retry, t0 + timedelta(minutes=90), settings)
    assert outcome.ok and outcome.result is not None
    assert outcome.result.notes == ("no GPU-hour rate for L40_PCIE: its GPU-minutes are unpriced (set [[cluster_rates]])",)
    once = ledger(sessions)
    assert pull(sessions, src, catalog, retry, t0 + timedelta(minutes=90), settings).ok
    assert ledger(sessions) == once

    nine, ten = t0.replace(minute=0), t0.replace(hour=10, minute=0)
    assert once == [
        (nine, "clusters", "H100_SXM cluster", "cluster", "cluster=train-a,gpu_type=H100_SXM", 0, 0, 0, 0, 30 * 16,
         int(Decimal("2.50") * 16 * Decimal("0.5") * 10**9)),
        (ten, "clusters", "H100_SXM cluster", "cluster", "cluster=train-a,gpu_type=H100_SXM", 0, 0, 0, 0, 60 * 16,
         int(Decimal("2.50") * 16 * 10**9)),
        (nine, "clusters", "L40_PCIE cluster", "cluster", "cluster=eval,gpu_type=L40_PCIE", 0, 0, 0, 0, 30 * 8, None),
        (ten, "clusters", "L40_PCIE cluster", "cluster", "cluster=eval,gpu_type=L40_PCIE", 0, 0, 0, 0, 60 * 8, None),
    ]

    together.clusters[2] = GpuCluster("c-new", gpu_type="H200_SXM", num_gpus=8, status="Ready",
                                      created_at=t0 + timedelta(minutes=100))
    assert pull(sessions, src, catalog, retry, t0 + timedelta(minutes=120), settings).ok
    h200 = [row for row in ledger(sessions) if row[2] == "H200_SXM cluster"]
    assert [(row[9], from_nanos(row[10])) for row in h200] == [(20 * 8, Decimal("5.49") * 8 * 20 / 60)]  # table rate


# -- dedicated endpoints: running replicas ----------------------------------------------------------

H200 = "8x_nvidia_h200_140gb_sxm"  # 66.67 cents a minute in the fake's sample hardware


def test_endpoints_are_billed_for_the_replicas_running(
    sessions: sessionmaker[Session], catalog: Catalog, together: FakeTogether, retry: RetryPolicy
) -> None:
    reported = {**Endpoint("endpoint-busy", model=DEEPSEEK, hardware=H200, name="busy").detail_json(),
                "ready_replicas": 3}  # a running count: the spec's endpoints give none
    scaled_to_zero = {**Endpoint("endpoint-zero", model=DEEPSEEK, hardware=H200, name="zero").detail_json(),
                      "autoscaling": {"min_replicas": 0, "max_replicas": 4, "ready_replicas": 0}}
    together.endpoints = [Endpoint("endpoint-spec", model=DEEPSEEK, hardware=H200, name="spec-shaped",
                                   min_replicas=2, max_replicas=5), reported, scaled_to_zero]
    src = source(together, "together_endpoints", start=None)
    t0 = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)
    assert pull(sessions, src, catalog, retry, t0).ok
    outcome = pull(sessions, src, catalog, retry, t0 + timedelta(minutes=30))

    assert outcome.ok and outcome.result is not None
    assert outcome.result.notes == ("endpoint spec-shaped: counted at min_replicas=2, a lower bound (up to "
                                    "max_replicas=5; the API reports no running count)",)
    assert state(sessions, "endpoints").last_note == outcome.result.notes[0]
    minutes = {row[4].partition(",")[0]: (row[9], from_nanos(row[10])) for row in ledger(sessions)}
    assert minutes == {"endpoint=busy": (90, Decimal("0.6667") * 90), "endpoint=spec-shaped": (60, Decimal("0.6667") * 60)}


# -- every together source fails cleanly ------------------------------------------------------------


@pytest.mark.parametrize("kind, path", [("together_fine_tunes", "/v1/fine-tunes"),
                                        ("together_clusters", "/v1/compute/clusters")])
def test_fine_tune_and_cluster_sources_fail_cleanly(
    sessions: sessionmaker[Session], catalog: Catalog, together: FakeTogether, retry: RetryPolicy, kind: str,
    path: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = source(together, kind, timeout_seconds=0.3)
    monkeypatch.setenv("TOGETHER_TEST_KEY", "wrong")
    denied = pull(sessions, src, catalog, retry)
    assert not denied.ok and "HTTP 401" in (denied.error or "")
    monkeypatch.setenv("TOGETHER_TEST_KEY", KEY)
    together.wrong_schema_next(path, times=3)
    wrong = pull(sessions, src, catalog, retry)
    assert not wrong.ok and "unexpected answer" in (wrong.error or "")
    together.hang_next(2, path, times=3)
    hung = pull(sessions, src, catalog, retry)
    assert not hung.ok and "timed out" in (hung.error or "")
    assert ledger(sessions) == [] and state(sessions, src.name).last_error == hung.error


# -- what the digest, budgets and forecasts make of it ----------------------------------------------


def test_the_digest_has_a_cluster_line_and_training_is_spent_not_extrapolated(
    database_url: str, catalog: Catalog, together: FakeTogether, retry: RetryPolicy
) -> None:
    from bot.views.digest import digest_blocks
    from jobs.config.sections import BudgetConfig
    from jobs.digest.daily import ClusterRun, build_digest

    clusters, fine_tunes = source(together, "together_clusters", start=None), source(together, "together_fine_tunes")
    settings = Settings(database_url=database_url, sources=[clusters, fine_tunes], alert_channel="C0ALERTS",
                        budgets=[BudgetConfig(name="training", amount=Decimal(1000), scope={"mode": "training"})])
    context = Context.open(settings)
    pulling = Context(settings, context.engine, context.sessions, catalog)  # the module's catalog, as before
    try:
        together.clusters = [GpuCluster("c-1", gpu_type="H100_SXM", num_gpus=8, cluster_name="train-a")]
        together.fine_tunes = [FineTune("ft-1", model=LLAMA, total_price=250 * 10**9,
                                        updated_at="2026-11-18T15:00:00Z")]
        yesterday = NOW - timedelta(days=1)
        for at in (yesterday.replace(hour=8), yesterday.replace(hour=20)):
            assert pull_one(pulling, clusters, at, retry=retry).ok
        assert pull_one(pulling, fine_tunes, NOW, retry=retry).ok

        digest = build_digest(context, now=NOW.replace(hour=9))
    finally:
        context.close()

    cost = Decimal("3.99") * 8 * 12  # our hardware table's H100_SXM rate, 8 GPUs, 12 hours
    assert digest.clusters == [ClusterRun("train-a", "H100_SXM", 12 * 60 * 8, cost, cost)]
    text = json.dumps(digest_blocks(digest), ensure_ascii=False)
    assert "*GPU clusters* (Thu, Nov 19)" in text
    assert "• *train-a* (H100_SXM): 96.0 GPU-hours, $383.04 · $383.04 this month" in text
    [budget] = digest.overview.budgets
    assert budget.spent == Decimal(250) and budget.forecast is not None and budget.forecast.point == Decimal(250)
    llama = next(m for m in digest.overview.models if m.key == LLAMA)
    assert llama.month_to_date == llama.point == Decimal(250)  # a one-off job, not $250 a day from now on
    gpu = next(m for m in digest.overview.models if m.key == "H100_SXM cluster")
    assert gpu.month_to_date == cost and gpu.point > cost  # a cluster still up keeps billing
