"""Pushed usage: parsing, validation, costing at the price of the day, dedupe, all-or-nothing."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db.models import PriceRecord, SeenEvent, UsageBucket
from db.totals import totals
from jobs.config.catalog import build_catalog
from jobs.config.sections import PriceOverride
from jobs.config.settings import Settings
from jobs.usage.costing import bucket_records
from jobs.usage.push_writer import PushWriter
from jobs.usage.records import IngestRejected, latest_allowed, parse_body, parse_record
from jobs.usage.validation import RecordError
from pricing.catalog import Catalog

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
NOV_3 = int(datetime(2026, 11, 3, 10, 5, tzinfo=timezone.utc).timestamp())
MAESTRO = "arcee-ai/maestro-reasoning"  # $0.90 in / $3.30 out per 1M (overlay)
SWITCH = "acme/switch-model"  # $1/$2 from Nov 1, $2/$4 from Nov 15 (config)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return build_catalog(
        Settings(
            prices=[
                PriceOverride(model=SWITCH, input=Decimal(1), output=Decimal(2), start=date(2026, 11, 1)),
                PriceOverride(model=SWITCH, input=Decimal(2), output=Decimal(4), start=date(2026, 11, 15)),
            ]
        )
    )


def response(
    id: str | None = "chatcmpl-1",
    model: str = MAESTRO,
    prompt: Any = 4000,
    completion: Any = 1000,
    cached: Any = None,
    created: Any = NOV_3,
    **extra: Any,
) -> dict[str, Any]:
    """An OpenAI-compatible chat completion response, as a service got it back."""
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion}
    if isinstance(prompt, int) and isinstance(completion, int):
        usage["total_tokens"] = prompt + completion
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    record: dict[str, Any] = {
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "secret answer"}}],
        "usage": usage,
        **extra,
    }
    if id is not None:
        record["id"] = id
    if created is not None:
        record["created"] = created
    return record


def ndjson(*records: dict[str, Any]) -> bytes:
    return b"\n".join(json.dumps(r).encode() for r in records) + b"\n"


def snapshot(sessions: sessionmaker[Session], by: str = "model") -> list[tuple[Any, ...]]:
    """The ledger's totals per group, comparable across engines and ways in."""
    with sessions() as session:
        return [
            (g.key, g.input_tokens, g.cached_input_tokens, g.output_tokens, g.requests, g.cost, g.unpriced_tokens)
            for g in totals(session, None, None, by)
        ]


def bucket_count(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(UsageBucket)) or 0


# -- the worked example, costing and buckets ---------------------------------------------------


def test_a_pushed_response_is_costed_like_the_worked_example(sessions: sessionmaker[Session], push_writer: PushWriter) -> None:
    result = push_writer.push(json.dumps(response()).encode(), project="web", now=NOW)

    assert (result.accepted, result.duplicates) == (1, 0)
    [group] = snapshot(sessions)
    assert group == (MAESTRO, 4000, 0, 1000, 1, Decimal("0.0069"), 0)
    with sessions() as session:
        bucket = session.scalars(select(UsageBucket)).one()
        price = session.get(PriceRecord, bucket.price_id)
    assert bucket.bucket_start == datetime(2026, 11, 3, 10, tzinfo=timezone.utc)
    assert (bucket.project, bucket.source, bucket.mode, bucket.width) == ("web", "push", "serverless", "1h")
    assert price is not None and (price.input_rate, price.output_rate) == (Decimal("0.9"), Decimal("3.3"))


def test_batch_mode_costs_half(sessions: sessionmaker[Session], push_writer: PushWriter) -> None:
    body = ndjson(response("a", prompt=3000, mode="batch"), response("b", prompt=3000))
    push_writer.push(body, project="etl", now=NOW)

    by_mode = {key: cost for key, *_, cost, _ in snapshot(sessions, "mode")}
    assert by_mode == {"serverless": Decimal("0.0060"), "batch": Decimal("0.0030")}


def test_cached_tokens_are_counted(sessions: sessionmaker[Session], push_writer: PushWriter) -> None:
    push_writer.push(json.dumps(response(cached=1000)).encode(), project="web", now=NOW)
    [(_, tin, tcached, *_)] = snapshot(sessions)
    assert (tin, tcached) == (4000, 1000)


def test_mid_month_price_change_splits_the_cost(sessions: sessionmaker[Session], push_writer: PushWriter) -> None:
    """Usage before the 15th costs $1/$2 per 1M; from the 15th on, $2/$4: each at its own time's price."""
    day = lambda d: int(datetime(2026, 11, d, 9, tzinfo=timezone.utc).timestamp())  # noqa: E731
    body = ndjson(
        response("before", SWITCH, prompt=1_000_000, completion=1_000_000, created=day(14)),
        response("after", SWITCH, prompt=1_000_000, completion=1_000_000, created=day(15)),
        response("too-early", SWITCH, prompt=1_000_000, completion=0, created=int(datetime(2026, 10, 31, tzinfo=timezone.utc).timestamp())),
    )
    push_writer.push(body, project="web", now=NOW)

    with sessions() as session:
        costs = {
            b.bucket_start.day: b.cost_nanos
            for b in session.scalars(select(UsageBucket).order_by(UsageBucket.bucket_start))
        }
        first_half = totals(session, datetime(2026, 11, 1, tzinfo=timezone.utc), datetime(2026, 11, 15, tzinfo=timezone.utc), "model")
        second_half = totals(session, datetime(2026, 11, 15, tzinfo=timezone.utc), None, "model")
    assert costs == {31: None, 14: 3 * 10**9, 15: 6 * 10**9}
    assert first_half[0].cost == Decimal(3) and second_half[0].cost == Decimal(6)


def test_unknown_model_is_kept_and_shown_unpriced(sessions: sessionmaker[Session], push_writer: PushWriter) -> None:
    body = ndjson(response("a", "nobody/knows-this-model"), response("b"))
    push_writer.push(body, project="web", now=NOW)

    groups = {g[0]: g for g in snapshot(sessions)}
    assert groups["nobody/knows-this-model"][5] is None  # no cost, not $0
    assert groups["nobody/knows-this-model"][6] == 5000
    with sessions() as session:
        [total] = totals(session, None, None, "project")
    assert total.cost == Decimal("0.0069") and total.unpriced_tokens == 5000


def test_dimensions_and_tags_are_kept_and_content_is_not(sessions: sessionmaker[Session], push_writer: PushWriter) -> None:
    record = response(feature="search", api_key="key-7", environment="prod", tags={"team": "ml", "a": 1}, project="ignored")
    push_writer.push(json.dumps(record).encode(), project="web", now=NOW)

    with sessions() as session:
        bucket = session.scalars(select(UsageBucket)).one()
        stored = [tuple(row) for row in session.execute(select(UsageBucket.__table__))]
    assert (bucket.project, bucket.feature, bucket.api_key, bucket.environment) == ("web", "search", "key-7", "prod")
    assert bucket.tags == "a=1,team=ml"
    assert "secret answer" not in repr(stored)


def test_timestamp_may_stand_for_created(sessions: sessionmaker[Session], push_writer: PushWriter) -> None:
    body = ndjson(
        response("a", created=None, timestamp="2026-11-03T10:59:59Z"),
        response("b", created=None, timestamp="2026-11-03T12:30:00+01:00"),
    )
    push_writer.push(body, project="web", now=NOW)
    with sessions() as session:
        starts = {b.bucket_start for b in session.scalars(select(UsageBucket))}
    assert starts == {datetime(2026, 11, 3, 10, tzinfo=timezone.utc), datetime(2026, 11, 3, 11, tzinfo=timezone.utc)}


# -- duplicates --------------------------------------------------------------------------------


def test_a_repeated_id_is_counted_once(sessions: sessionmaker[Session], push_writer: PushWriter) -> None:
    first = push_writer.push(ndjson(response("a"), response("b"), response("a")), project="web", now=NOW)
    again = push_writer.push(ndjson(response("b"), response("c")), project="web", now=NOW)

    assert (first.accepted, first.duplicates) == (2, 1)
    assert (again.accepted, again.duplicates) == (1, 1)
    [(_, tin, _, tout, requests, cost, _)] = snapshot(sessions)
    assert (tin, tout, requests, cost) == (12000, 3000, 3, Decimal("0.0207"))


def test_records_without_id_are_all_counted(sessions: sessionmaker[Session], push_writer: PushWriter) -> None:
    result = push_writer.push(ndjson(response(None), response(None)), project="web", now=NOW)
    assert (result.accepted, result.duplicates) == (2, 0)


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (response(prompt=-5), "prompt_tokens is negative"),
        (response(completion=-1), "completion_tokens is negative"),
        (response(prompt="12"), "whole number"),
        (response(created=None, timestamp="yesterday at noon"), "unknown time format"),
        (response(created=None, timestamp=1700000000), "ISO 8601"),
        (response(created=int((NOW + timedelta(days=2)).timestamp())), "future"),
        (response(created=int(NOW.timestamp()) * 1000), "future"),
        (response(created=None), "no time"),
        (response(model=""), "model"),
        (response(cached=5000), "exceed prompt_tokens"),
        (response(mode="spot"), "mode must be"),
        (response(tags={"a": "x,y"}), "tags"),
        ({"id": "x", "model": MAESTRO, "created": NOV_3}, "usage is missing"),
    ],
)
def test_a_bad_record_is_rejected_with_its_reason(bad: dict[str, Any], reason: str) -> None:
    with pytest.raises(IngestRejected) as refused:
        parse_body(ndjson(response("good"), bad), project="web", now=NOW)
    [(line, message)] = refused.value.errors
    assert line == 2 and reason in message


def test_a_refused_push_applies_nothing_and_names_every_bad_line(sessions: sessionmaker[Session], push_writer: PushWriter) -> None:
    body = (
        json.dumps(response("a")).encode()
        + b"\n{not json\n"
        + json.dumps(response("b", prompt=-1)).encode()
        + b"\n\n"
        + json.dumps(response("c")).encode()
        + b"\n[1, 2]\n"
    )
    with pytest.raises(IngestRejected) as refused:
        push_writer.push(body, project="web", now=NOW)

    assert [line for line, _ in refused.value.errors] == [2, 3, 6]
    assert "not valid JSON" in refused.value.errors[0][1]
    assert bucket_count(sessions) == 0
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(SeenEvent)) == 0
    # Fixed and sent again, the same ids are not duplicates: nothing of the refused push counted.
    result = push_writer.push(ndjson(response("a"), response("b"), response("c")), project="web", now=NOW)
    assert (result.accepted, result.duplicates) == (3, 0)


def test_an_empty_body_is_refused() -> None:
    with pytest.raises(IngestRejected):
        parse_body(b"  \n", project="web", now=NOW)


def test_a_pretty_printed_single_record_is_accepted() -> None:
    [record] = parse_body(json.dumps(response(), indent=2).encode(), project="web", now=NOW)
    assert (record.input_tokens, record.output_tokens, record.project) == (4000, 1000, "web")


# -- properties --------------------------------------------------------------------------------

names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=",=\x00"), min_size=1, max_size=20)
counts = st.integers(min_value=0, max_value=10**12)
moments = st.integers(min_value=int(datetime(2000, 1, 1, tzinfo=timezone.utc).timestamp()), max_value=int(NOW.timestamp()))


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    prompt = draw(counts)
    record = response(
        id=draw(st.one_of(st.none(), st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=40))),
        model=draw(names.filter(lambda s: s.strip() != "")),
        prompt=prompt,
        completion=draw(counts),
        cached=draw(st.one_of(st.none(), st.integers(0, prompt))),
        created=draw(moments),
    )
    for field in ("feature", "api_key", "environment"):
        if draw(st.booleans()):
            record[field] = draw(names)
    if draw(st.booleans()):
        record["mode"] = draw(st.sampled_from(["serverless", "batch", "dedicated"]))
    if draw(st.booleans()):
        record["tags"] = draw(st.dictionaries(names, names, max_size=3))
    return record


@hsettings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(records())
def test_property_valid_records_parse_to_what_they_say(record: dict[str, Any]) -> None:
    parsed = parse_record(record, latest=latest_allowed(NOW), project="p")
    usage = record["usage"]
    assert parsed.input_tokens == usage["prompt_tokens"]
    assert parsed.output_tokens == usage["completion_tokens"]
    assert parsed.cached_input_tokens == usage.get("prompt_tokens_details", {}).get("cached_tokens", 0)
    assert parsed.hour <= record["created"] < parsed.hour + 3600 and parsed.hour % 3600 == 0
    assert parsed.mode == record.get("mode", "serverless")
    assert parsed.event_id == record.get("id") and parsed.project == "p"
    tags = record.get("tags") or {}
    assert parsed.tags == ",".join(f"{k}={v}" for k, v in sorted(tags.items()))


@hsettings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records(), min_size=1, max_size=30))
def test_property_ndjson_round_trip_and_buckets_keep_every_token(batch: list[dict[str, Any]]) -> None:
    parsed = parse_body(ndjson(*batch), project="p", now=NOW)
    assert len(parsed) == len(batch)
    rows = bucket_records(parsed)
    assert sum(r.input_tokens for r in rows) == sum(r["usage"]["prompt_tokens"] for r in batch)
    assert sum(r.output_tokens for r in rows) == sum(r["usage"]["completion_tokens"] for r in batch)
    assert sum(r.requests for r in rows) == len(batch)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@hsettings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=300), st.lists(json_values, max_size=5).map(lambda vs: b"\n".join(json.dumps(v).encode() for v in vs))))
def test_property_garbage_is_refused_cleanly_never_crashes(body: bytes) -> None:
    try:
        parse_body(body, project="p", now=NOW)
    except IngestRejected as refused:
        assert refused.errors and all(line >= 1 and reason for line, reason in refused.errors)


@hsettings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(records(), st.sampled_from(["prompt_tokens", "completion_tokens"]), st.integers(max_value=-1))
def test_property_negative_tokens_are_always_refused(record: dict[str, Any], field: str, value: int) -> None:
    record["usage"][field] = value
    record["usage"].pop("prompt_tokens_details", None)
    with pytest.raises(RecordError, match="negative"):
        parse_record(record, latest=latest_allowed(NOW))
