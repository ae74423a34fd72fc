"""Hostile input (issue 15): every reproduction as a test with the answer it gets now, and the
property that a push or an import is either taken whole or refused whole, whatever its bytes."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.cli import main
from bot.server import create_server
from db.models import SeenEvent, UsageBucket
from db.totals import totals
from jobs.config.context import Context
from jobs.config.sections import PriceOverride
from jobs.config.settings import Settings
from jobs.usage.imports import import_file
from jobs.usage.push_writer import PushWriter
from jobs.usage.records import IngestRejected
from tests.harness import ServerThread

PRICEY = "acme/pricey-model"  # $150 in, $600 out per 1M tokens
CHEAP = "arcee-ai/maestro-reasoning"
BOM = b"\xef\xbb\xbf"


def record(event_id: str | None = None, *, model: str = CHEAP, prompt: int = 3000, completion: int = 1000,
           created: int | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "created": created or int(time.time()) - 7200,
                            "usage": {"prompt_tokens": prompt, "completion_tokens": completion}, **extra}
    if event_id is not None:
        body["id"] = event_id
    return body


def lines(*records: dict[str, Any] | str) -> bytes:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records).encode() + b"\n"


def settings_for(database_url: str) -> Settings:
    return Settings(database_url=database_url, ingest_tokens="web=tok_web", max_body_bytes=3_000_000,
                    prices=[PriceOverride(model=PRICEY, input=Decimal(150), output=Decimal(600))])


@pytest.fixture
def app_settings(database_url: str) -> Settings:
    return settings_for(database_url)


@pytest.fixture
def server(context: Context) -> Iterator[ServerThread]:
    with ServerThread(create_server(context, None)) as running:
        yield running


def push(server: ServerThread, body: bytes) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/usage", content=body, timeout=20,
                      headers={"Authorization": "Bearer tok_web", "Content-Type": "application/x-ndjson"})


def ledger(sessions: sessionmaker[Session]) -> tuple[int, int, int, Decimal, int, int]:
    """Input and output tokens, requests, cost, buckets and counted ids: all of the ledger that a push moves."""
    with sessions() as session:
        groups = totals(session, None, None, "source")
        ids = session.scalar(select(func.count()).select_from(SeenEvent)) or 0
        buckets = session.scalar(select(func.count()).select_from(UsageBucket)) or 0
    return (sum(g.input_tokens for g in groups), sum(g.output_tokens for g in groups), sum(g.requests for g in groups),
            sum((g.cost or Decimal(0) for g in groups), Decimal(0)), buckets, ids)


EMPTY = (0, 0, 0, Decimal(0), 0, 0)

# -- pushes: what answered "503 retry later" for ever -------------------------------------------

DEEP = "[" * 1000 + "]" * 1000
BAD_LINES = {
    "JSON nested 1,000 deep": DEEP,
    "a record with a field nested 1,000 deep": json.dumps(record("d1"))[:-1] + ', "choices": ' + DEEP + "}",
    "JSON nested 100,000 deep": "[" * 100_000 + "]" * 100_000,
    "a lone surrogate in the model": json.dumps(record("s1", model="\udc80x")),
    "a lone surrogate in the id": json.dumps(record("\ud800id")),
    "a lone surrogate in the feature": json.dumps(record("s2", feature="a\udfffb")),
    "a lone surrogate in api_key": json.dumps(record("s3", api_key="\udc80")),
    "a lone surrogate in environment": json.dumps(record("s4", environment="prod\udc80")),
    "a lone surrogate in a tag key": json.dumps(record("s5", tags={"t\udc80": "v"})),
    "a lone surrogate in a tag value": json.dumps(record("s6", tags="team=\udc80")),
    "a NUL in the model": json.dumps(record("n1", model="gpt\x00-4o")),
    "a NUL in the id": json.dumps(record("n2\x00")),
    "a NUL in the feature": json.dumps(record("n3", feature="chat\x00")),
    "a NUL in a tag": json.dumps(record("n4", tags={"team": "m\x00l"})),
    "a count of 10^13": json.dumps(record("c1", completion=10**13)),
    "a count of 1e400": json.dumps(record("c2"))[:-2] + ', "completion_tokens": 1e400}}',
    "an integer of 5,000 digits": json.dumps(record("c3"))[:-2] + ', "completion_tokens": ' + "9" * 5000 + "}}",
}


@pytest.mark.parametrize("bad", list(BAD_LINES), ids=list(BAD_LINES))
def test_a_bad_value_is_422_naming_its_line_never_503(server: ServerThread, context: Context, bad: str) -> None:
    response = push(server, lines(record("good-1"), BAD_LINES[bad], record("good-2")))
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["line"] == 2 and error["reason"]
    assert ledger(context.sessions) == EMPTY


def test_sixteen_records_of_a_trillion_tokens_cannot_overflow_the_money_column(server: ServerThread,
                                                                                context: Context) -> None:
    """Issue 15: 16 x 1e12 output tokens at $600/1M overflowed a BIGINT of nano-dollars (PostgreSQL: 503 each
    time; SQLite: stored a float, $12,000,000,000.600000512)."""
    body = lines(*(record(f"big-{n}", model=PRICEY, prompt=0, completion=10**12) for n in range(16)))
    response = push(server, body)
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["line"] == 1 and "$10,000,000" in error["reason"] and PRICEY in error["reason"]
    assert ledger(context.sessions) == EMPTY


def test_a_bucket_that_would_pass_its_capacity_over_two_pushes_refuses_the_second(server: ServerThread,
                                                                                   context: Context) -> None:
    """The running sum is checked where it is summed (in the upsert), not only per record or per push."""
    hour = int(time.time()) // 3600 * 3600 - 7200
    six_million = lines(record(None, model=PRICEY, prompt=0, completion=10**10, created=hour + 60))  # $6,000,000
    assert push(server, six_million).status_code == 200
    before = ledger(context.sessions)
    again = push(server, lines(record(None, model=CHEAP, created=hour), record(None, model=PRICEY, prompt=0,
                                                                               completion=10**10, created=hour + 120)))
    assert again.status_code == 422
    [error] = again.json()["errors"]
    assert error["line"] == 2 and "with what the ledger has already" in error["reason"]
    assert ledger(context.sessions) == before == (0, 10**10, 1, Decimal(6_000_000), 1, 0)
    with context.sessions() as session:
        assert type(session.scalar(select(UsageBucket.cost_nanos))) is int  # exact, not a float


def test_a_bom_is_accepted_on_a_json_push_and_an_ndjson_push(server: ServerThread, context: Context) -> None:
    assert push(server, BOM + json.dumps(record("bom-1")).encode()).json() == {"accepted": 1, "duplicates": 0}
    assert push(server, BOM + lines(record("bom-2"), record("bom-3"))).json() == {"accepted": 2, "duplicates": 0}
    assert push(server, BOM + json.dumps(record("bom-4"), indent=2).encode()).status_code == 200
    assert ledger(context.sessions)[:3] == (4 * 3000, 4 * 1000, 4)


# -- imports: all or nothing ----------------------------------------------------------------


def write_jsonl(path: Path, good: int, last: str) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for n in range(good):
            handle.write(json.dumps(record(f"imp-{n}")) + "\n")
        handle.write(last + "\n")
    return path


CSV_HEADER = "id,created,model,prompt_tokens,completion_tokens,feature\n"


def write_csv(path: Path, good: int, last: bytes) -> Path:
    at = int(time.time()) - 7200
    with path.open("wb") as handle:
        handle.write(CSV_HEADER.encode())
        for n in range(good):
            handle.write(f"csv-{n},{at},{CHEAP},3000,1000,chat\n".encode())
        handle.write(last + b"\n")
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_refused_import_commits_nothing_and_can_finish_once_fixed(context: Context, tmp_path: Path,
                                                                     fmt: str) -> None:
    """Issue 15: 60,000 good lines then a lone surrogate (JSONL) or a NUL (CSV, PostgreSQL) crashed the import
    with 50,000 records committed, and every rerun failed the same way. Here: chunks of 1,000, 3,000 good lines."""
    at = int(time.time()) - 7200
    if fmt == "jsonl":
        path = write_jsonl(tmp_path / "usage.jsonl", 3000, json.dumps(record("imp-bad", model="\udc80x")))
    else:
        path = write_csv(tmp_path / "usage.csv", 3000, f"csv-bad,{at},gpt\x00-4o,1,1,chat".encode())
    with pytest.raises(IngestRejected) as refused:
        import_file(context, path, chunk_lines=1000)
    assert refused.value.errors == [(3002 if fmt == "csv" else 3001,
                                     "model contains a lone surrogate (not valid Unicode text)" if fmt == "jsonl"
                                     else "model contains a NUL character")]
    assert ledger(context.sessions) == EMPTY
    fixed = path.read_bytes().replace(b"\\udc80x", b"fixed-model").replace(b"gpt\x00-4o", b"gpt-4o")
    path.write_bytes(fixed)
    result = import_file(context, path, chunk_lines=1000)
    assert (result.accepted, result.duplicates) == (3001, 0)


def test_the_apply_pass_refuses_an_overflowing_bucket_whole(context: Context, tmp_path: Path) -> None:
    """A bucket that fills up part-way through an import (its third chunk) refuses the whole file, atomically."""
    hour = int(time.time()) // 3600 * 3600 - 7200
    writer = PushWriter(context)
    writer.push(lines(record("seed", model=PRICEY, prompt=0, completion=10**10, created=hour)), project="web")
    writer.close()
    before = ledger(context.sessions)
    path = tmp_path / "usage.jsonl"
    rows = [record(f"f-{n}", created=hour + n) for n in range(2500)]
    rows.append(record("f-last", model=PRICEY, prompt=0, completion=10**10, created=hour + 5, project="web"))
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(IngestRejected) as refused:
        import_file(context, path, chunk_lines=1000, source="push")
    assert [line for line, _ in refused.value.errors] == [2501]
    assert ledger(context.sessions) == before  # not the 2,500 lines of the first chunks, not their ids


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_imports_of_hostile_files_refuse_naming_the_line(database_url: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    at = int(time.time()) - 7200
    deep = write_jsonl(tmp_path / "deep.jsonl", 2, "[" * 100_000 + "]" * 100_000)
    wide = write_csv(tmp_path / "wide.csv", 2, f'w,{at},"{"x" * 200_000}",1,1,chat'.encode())
    latin = write_csv(tmp_path / "latin.csv", 2, f"l,{at},{CHEAP},1,1,caf".encode() + b"\xe9")
    for path, line, reason in ((deep, 3, "nested deeper than 64 levels"),
                               (wide, 4, "field larger than field limit (131072)"),
                               (latin, 4, "not valid UTF-8 text (byte 0xe9 at column")):
        code, out, err = run_cli(capsys, "import", str(path))
        assert code == 2 and "Traceback" not in err and "nothing applied" in err, err
        assert f"line {line}: " in err and reason in err, err
    bom_csv = tmp_path / "bom.csv"
    bom_csv.write_bytes(BOM + f"{CSV_HEADER}b1,{at},{CHEAP},3000,1000,caf\u00e9\n".encode())
    bom_jsonl = tmp_path / "bom.jsonl"
    bom_jsonl.write_bytes(BOM + lines(record("b2")))
    assert run_cli(capsys, "import", str(bom_csv))[0] == 0 and run_cli(capsys, "import", str(bom_jsonl))[0] == 0
    engine_context = Context.open(settings_for(database_url))
    with engine_context.sessions() as session:
        assert sorted(session.scalars(select(UsageBucket.feature))) == ["", "café"]  # no U+FFFD anywhere
    engine_context.close()


@pytest.mark.parametrize("command", [["serve"], ["check"], ["usage"], ["pull"], ["db", "upgrade"]])
def test_a_non_numeric_database_port_is_one_line_and_exit_2(command: list[str], monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://budget:hunter2pw@db.internal:abc/ledger")
    code, out, err = run_cli(capsys, *command)
    assert code == 2 and out == ""
    assert err.strip().splitlines() == ["budget-guard: configuration: DATABASE_URL: the port is not a number from "
                                        "1 to 65535; expected postgresql+psycopg://USER@HOST:5432/DB"]


def test_quote_cli_answers_a_zero_rate_and_refuses_huge_numbers_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "quote", "in=3000 out=1000 rate=0/0 requests=1M/mo")
    assert code == 0 and "$0.00" in out and err == ""
    for text in ("llama-3.3-70b 1e999999999/1k", "llama-3.3-70b 3k/1k x 1e999999999/mo",
                 "in=3000 out=1000 rate=1e999999999/1 requests=1M/mo"):
        code, out, err = run_cli(capsys, "quote", text)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "exponent out of range" in err, err


# -- properties: whatever the bytes, all of it or none of it ------------------------------------

HOSTILE = [DEEP, "[" * 70 + "]" * 70, "\xff", '{"model": "m"}', "null", "[]", '"text"', "{", "}", "1e999",
           json.dumps(record(None, model="\udc80")), json.dumps(record(None, feature="\x00")),
           json.dumps(record(None, completion=10**13)), json.dumps(record(None, prompt=-1)),
           json.dumps(record(None, prompt=1.5)), json.dumps(record(None, model=PRICEY, completion=10**12)),
           json.dumps(record(None, created=10**12)), json.dumps(record(None, tags="a=b,c")), "\ufeff{}"]


@st.composite
def push_bodies(draw: st.DrawFn) -> bytes:
    """Bodies of fresh good records, hostile lines, stray bytes, BOMs, blank lines: or any bytes at all."""
    if draw(st.integers(0, 5)) == 0:
        return draw(st.binary(max_size=400))
    prefix = "@ID@"  # replaced by a fresh id per run: hypothesis replays examples, the ledger remembers ids
    parts: list[bytes] = []
    for n in range(draw(st.integers(1, 6))):
        kind = draw(st.integers(0, 9))
        if kind <= 5:
            event_id = draw(st.sampled_from([f"{prefix}-{n}", f"{prefix}-0", None]))
            parts.append(json.dumps(record(event_id, prompt=draw(st.integers(0, 10**6)),
                                           completion=draw(st.integers(0, 10**6)))).encode())
        elif kind <= 7:
            parts.append(draw(st.sampled_from(HOSTILE)).encode("utf-8", "surrogatepass"))
        elif kind == 8:
            parts.append(b"")
        else:
            parts.append(draw(st.binary(max_size=20)))
    body = b"\n".join(parts)
    return (BOM if draw(st.booleans()) else b"") + body


def expected_delta(body: bytes) -> tuple[int, int, int]:
    """What taking `body` whole adds to the ledger (input, output, requests = records counted), read
    without our parser: json.loads, first occurrence of each id."""
    text = body.removeprefix(BOM).decode("utf-8")
    try:
        whole = json.loads(text)
        objects = [whole] if isinstance(whole, dict) else None
    except ValueError:
        objects = None
    if objects is None:
        objects = [json.loads(line) for line in text.split("\n") if line.strip()]
    seen: set[str] = set()
    tin = tout = n = 0
    for obj in objects:
        if "id" in obj:
            if obj["id"] in seen:
                continue
            seen.add(obj["id"])
        usage = obj["usage"]
        tin += usage.get("prompt_tokens", usage.get("input_tokens")) or 0
        tout += usage.get("completion_tokens", usage.get("output_tokens")) or 0
        n += obj.get("requests", 1)
    return tin, tout, n


@hsettings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(body=push_bodies())
def test_property_a_push_is_2xx_and_all_of_it_or_4xx_and_none_of_it(server: ServerThread, context: Context,
                                                                     body: bytes) -> None:
    body = body.replace(b"@ID@", uuid.uuid4().hex.encode())
    before = ledger(context.sessions)
    response = push(server, body)
    after = ledger(context.sessions)
    assert response.status_code in (200, 422), response.text
    event(f"HTTP {response.status_code}")
    if response.status_code == 200:
        tin, tout, n = expected_delta(body)
        assert (after[0] - before[0], after[1] - before[1], after[2] - before[2]) == (tin, tout, n)
        assert response.json()["accepted"] == n
    else:
        assert after == before and response.json()["errors"]


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(body=push_bodies(), fmt=st.sampled_from(["jsonl", "csv"]))
def test_property_an_import_is_taken_whole_or_refused_whole(context: Context, tmp_path_factory: pytest.TempPathFactory,
                                                            body: bytes, fmt: str) -> None:
    path = tmp_path_factory.mktemp("imp") / f"usage.{fmt}"
    body = body.replace(b"@ID@", uuid.uuid4().hex.encode())
    if fmt == "csv":  # the same records as CSV rows; hostile and stray lines stay as they are
        body = _as_csv(body)
    path.write_bytes(body)
    before = ledger(context.sessions)
    try:
        result = import_file(context, path, chunk_lines=2)
    except IngestRejected as refused:
        event("refused")
        assert refused.errors and ledger(context.sessions) == before
        return
    event("imported")
    after = ledger(context.sessions)
    assert after[2] - before[2] == result.accepted
    if fmt == "jsonl" and body.strip(b" \t\r\n\xef\xbb\xbf"):
        tin, tout, n = expected_delta(b"\n".join(b for b in body.removeprefix(BOM).split(b"\n") if b.strip()))
        assert (after[0] - before[0], after[1] - before[1]) == (tin, tout) and n == result.accepted


def _as_csv(body: bytes) -> bytes:
    rows = [CSV_HEADER.encode()]
    for line in body.removeprefix(BOM).split(b"\n"):
        try:
            obj = json.loads(line)
            usage = obj["usage"]
            rows.append(f"{obj.get('id', '')},{obj['created']},{obj['model']},{usage['prompt_tokens']},"
                        f"{usage['completion_tokens']},\n".encode("utf-8", "surrogatepass"))
        except (ValueError, KeyError, TypeError):
            rows.append(line + b"\n")
    return (BOM if body.startswith(BOM) else b"") + b"".join(rows)


def test_a_budget_amount_or_a_configured_rate_of_1e999999999_is_refused_in_words(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from jobs.budgets.specs import BudgetError, parse_amount

    with pytest.raises(BudgetError, match="dollars like 5000"):
        parse_amount("1e999999999")
    (tmp_path / "budget-guard.toml").write_text('[[prices]]\nmodel = "acme/x"\ninput = "1e999999999"\noutput = 1\n')
    code, _, err = run_cli(capsys, "quote", "acme/x 3k/1k x 2M/mo")
    assert code == 2 and err.strip() == "budget-guard: configuration: prices.0.input: Input should be less than or equal to 100000"


# -- the other ways in (OTLP, LiteLLM) keep the same rules -----------------------------------------


def test_otlp_and_litellm_refuse_deep_json_and_overflowing_buckets_without_a_5xx(server: ServerThread,
                                                                                 context: Context) -> None:
    headers = {"Authorization": "Bearer tok_web", "Content-Type": "application/json"}
    deep = ("[" * 100_000 + "]" * 100_000).encode()
    traces = httpx.post(f"{server.url}/v1/traces", content=deep, headers=headers, timeout=20)
    assert traces.status_code == 400, traces.text
    litellm = httpx.post(f"{server.url}/v1/litellm", content=deep, headers=headers, timeout=20)
    assert litellm.status_code == 422 and "nested deeper than 64 levels" in litellm.text
    example = json.loads((Path(__file__).parent / "data" / "litellm_standard_logging_payload.json").read_text())
    calls = [{**example, "id": f"call-{n}", "model": "o1-pro", "prompt_tokens": 0, "completion_tokens": 10**12}
             for n in range(16)]  # $600,000,000 each
    refused = httpx.post(f"{server.url}/v1/litellm", content=json.dumps(calls), headers=headers, timeout=20)
    assert refused.status_code == 422, refused.text
    [error] = refused.json()["errors"]
    assert error["entry"] == 1 and "$10,000,000" in error["reason"]
    assert ledger(context.sessions) == EMPTY


@pytest.mark.parametrize("text", ["\u00b2", "\u0663", "--5", "1\u00b2"])
def test_characters_that_look_like_digits_are_read_as_text_not_crashed_on(text: str) -> None:
    from bot.views.spend import pull_schedule
    from jobs.usage.sources.generic_json import dig
    from jobs.usage.sources.http import retry_after_seconds

    assert retry_after_seconds(text) is None
    assert dig({"data": [1, 2, 3]}, f"data.{text}") is None
    assert pull_schedule(f"*/{text} * * * *").startswith(("on the schedule", "every"))
