"""Group commit of pushes: concurrent pushes share transactions, each is applied whole or not at all."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select

import jobs.usage.push_writer as push_writer
from db.models import UsageBucket
from jobs.config.context import Context
from jobs.usage.push_writer import PushWriter
from jobs.usage.records import parse_body

NOW = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
MODEL = "meta-llama/Llama-3.3-70B-Instruct-Turbo"


def body(*ids: str) -> bytes:
    return "\n".join(json.dumps({"id": i, "created": int(NOW.timestamp()) - 60, "model": MODEL,
                                 "usage": {"prompt_tokens": 1000, "completion_tokens": 100}}) for i in ids).encode()


def requests_in_ledger(context: Context) -> int:
    with context.sessions() as session:
        return int(session.scalar(select(func.coalesce(func.sum(UsageBucket.requests), 0))))


def test_concurrent_pushes_commit_together_and_each_id_counts_once(context: Context,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    commits: list[int] = []
    commit = PushWriter._commit
    monkeypatch.setattr(PushWriter, "_commit", lambda self, batch: (commits.append(len(batch)), commit(self, batch)))
    writer = PushWriter(context)
    barrier = threading.Barrier(40)
    results = []

    def push(n: int) -> None:
        records = parse_body(body(f"own-{n}-a", f"own-{n}-b", "shared"), project="search", now=NOW)
        barrier.wait()
        results.append(writer.write(records, source="push", now=NOW))

    threads = [threading.Thread(target=push, args=(n,)) for n in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    assert sum(r.accepted for r in results) == 81 and sum(r.duplicates for r in results) == 39
    assert requests_in_ledger(context) == 81  # "shared" was counted by exactly one push
    assert sum(commits) == 40 and len(commits) < 40  # some pushes shared a transaction


def test_a_push_that_fails_in_a_batch_fails_alone(context: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    apply = push_writer.apply_records

    def apply_or_fail(session, catalog, records, **kwargs):  # type: ignore[no-untyped-def]
        if any(r.event_id == "poison" for r in records):
            raise RuntimeError("the database refused this one")
        return apply(session, catalog, records, **kwargs)

    monkeypatch.setattr(push_writer, "apply_records", apply_or_fail)
    writer = PushWriter(context)
    barrier = threading.Barrier(10)
    outcomes: dict[str, object] = {}

    def push(name: str) -> None:
        records = parse_body(body(name), project="search", now=NOW)
        barrier.wait()
        try:
            outcomes[name] = writer.write(records, source="push", now=NOW).accepted
        except RuntimeError as exc:
            outcomes[name] = str(exc)

    names = ["poison"] + [f"good-{n}" for n in range(9)]
    threads = [threading.Thread(target=push, args=(name,)) for name in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    assert outcomes.pop("poison") == "the database refused this one"
    assert set(outcomes.values()) == {1}
    assert requests_in_ledger(context) == 9
