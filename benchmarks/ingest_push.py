"""Push ingest over HTTP, against plain sqlite3/psycopg executemany of the same records.

    python benchmarks/ingest_push.py [--records 200000] [--batch 5000] [--postgres URL]

Starts `budget-guard serve --no-scheduler` on a free 127.0.0.1 port with INGEST_TOKENS set
and a fresh database, POSTs the records as NDJSON batches with httpx, and times it. Then
inserts the same records with the driver's executemany (same batches, a commit each) into
a table shaped like the records (id primary key, time, model, project, feature, tokens) and
prints records per second for both and the ratio ours/raw. Timestamps: the last 24 hours in
order, as a live service pushes them (`--spread-days 30` scatters them over a month); ids
random, as providers' ids are (`--sequential-ids` for ids in insertion order).
Prints figures; asserts nothing."""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
MODELS = [
    "meta-llama/Llama-3.3-70B-Instruct-Turbo", "deepseek-ai/DeepSeek-V3", "deepseek-ai/DeepSeek-R1",
    "Qwen/Qwen2.5-72B-Instruct-Turbo", "arcee-ai/maestro-reasoning",
] + [f"bench/model-{n}" for n in range(15)]
PROJECTS = [f"project-{n}" for n in range(10)]


def records(count: int, spread_days: float, sequential_ids: bool = False, seed: int = 11) -> list[dict]:
    """OpenAI-compatible responses as services log them, oldest first; ids random like providers' own."""
    rng = random.Random(seed)
    now = int(time.time())
    span = int(spread_days * 86400)
    out = []
    for n in range(count):
        created = now - span + (n * span // count if spread_days <= 1 else rng.randrange(span))
        prompt = rng.randrange(50, 6000)
        out.append({
            "id": f"chatcmpl-{n:032d}" if sequential_ids else f"chatcmpl-{uuid.UUID(int=rng.getrandbits(128)).hex}",
            "object": "chat.completion",
            "created": created,
            "model": MODELS[n % len(MODELS)],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "..."}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": rng.randrange(5, 1500), "total_tokens": 0,
                      "prompt_tokens_details": {"cached_tokens": rng.randrange(0, prompt // 2 + 1)}},
            "feature": rng.choice(["chat", "search", "summarize", "classify"]),
        })
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(database_url: str, tokens: dict[str, str], workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "BUDGET_GUARD_"))}
    env.update(INGEST_TOKENS=",".join(f"{p}={t}" for p, t in tokens.items()), LOG_LEVEL="WARNING")
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve", "--no-scheduler", "--upgrade-db", "--host", "127.0.0.1",
         "--port", str(port), "--database-url", database_url],
        cwd=workdir, env={**env, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"serve exited: {process.stderr.read().decode()[-2000:] if process.stderr else ''}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit("serve did not answer /healthz within 60 s")


def push_all(base: str, batches: list[tuple[str, bytes]]) -> float:
    """POST every batch; seconds taken."""
    with httpx.Client(base_url=base, timeout=120) as client:
        started = time.perf_counter()
        for token, body in batches:
            answer = client.post("/v1/usage", content=body, headers={
                "Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"})
            if answer.status_code != 200:
                raise SystemExit(f"push failed: {answer.status_code} {answer.text[:500]}")
        return time.perf_counter() - started


RAW_COLUMNS = "(id, created, model, project, feature, prompt_tokens, completion_tokens, cached_tokens)"


def raw_rows(batch: list[dict], project: str) -> list[tuple]:
    return [(r["id"], r["created"], r["model"], project, r["feature"], r["usage"]["prompt_tokens"],
             r["usage"]["completion_tokens"], r["usage"]["prompt_tokens_details"]["cached_tokens"]) for r in batch]


def raw_sqlite(path: Path, batches: list[list[tuple]]) -> float:
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("CREATE TABLE usage_records (id TEXT PRIMARY KEY, created INTEGER, model TEXT, project TEXT, "
                       "feature TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, cached_tokens INTEGER)")
    started = time.perf_counter()
    for rows in batches:
        with connection:
            connection.executemany(f"INSERT INTO usage_records {RAW_COLUMNS} VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


def raw_postgres(url: str, batches: list[list[tuple]]) -> float:
    import psycopg

    schema = f"raw_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), options=f"-csearch_path={schema}") as c:
            c.execute("CREATE TABLE usage_records (id TEXT PRIMARY KEY, created BIGINT, model TEXT, project TEXT, "
                      "feature TEXT, prompt_tokens BIGINT, completion_tokens BIGINT, cached_tokens BIGINT)")
            c.commit()
            started = time.perf_counter()
            for rows in batches:
                with c.cursor() as cursor:
                    cursor.executemany(f"INSERT INTO usage_records {RAW_COLUMNS} VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", rows)
                c.commit()
            return time.perf_counter() - started
    finally:
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def postgres_schema_url(url: str) -> tuple[str, str]:
    """A fresh schema on the server at `url`, and a URL whose search_path is that schema."""
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in url else "?"
    return schema, f"{url}{sep}options=-csearch_path%3D{schema}"


def drop_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as admin:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def run(engine: str, database_url: str, raw: Callable[[list[list[tuple]]], float], args: argparse.Namespace, data: list[dict], workdir: Path) -> None:
    tokens = {p: f"token-{p}" for p in PROJECTS}
    batches = []
    raw_batches = []
    for start in range(0, len(data), args.batch):
        project = PROJECTS[(start // args.batch) % len(PROJECTS)]
        chunk = data[start : start + args.batch]
        batches.append((tokens[project], b"\n".join(json.dumps(r).encode() for r in chunk)))
        raw_batches.append(raw_rows(chunk, project))
    process, base = start_server(database_url, tokens, workdir)
    try:
        ours = push_all(base, batches)
    finally:
        process.terminate()
        process.wait(timeout=30)
    theirs = raw(raw_batches)
    n = len(data)
    size = sum(len(b) for _, b in batches) / len(batches)
    print(f"{engine}: {n:,} records in {len(batches)} NDJSON batches of {args.batch:,} (~{size / 1e6:.1f} MB each)")
    print(f"  ours over HTTP : {ours:7.2f} s  {n / ours:10,.0f} records/s")
    print(f"  raw executemany: {theirs:7.2f} s  {n / theirs:10,.0f} records/s")
    print(f"  ratio ours/raw : {theirs / ours:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--spread-days", type=float, default=1.0)
    parser.add_argument("--sequential-ids", action="store_true",
                        help="ids in insertion order (cheaper B-tree inserts for both sides) instead of random")
    parser.add_argument("--postgres", default=os.environ.get("TEST_DATABASE_URL"),
                        help="also run on this PostgreSQL server (default: TEST_DATABASE_URL)")
    args = parser.parse_args()
    data = records(args.records, args.spread_days, args.sequential_ids)
    print(f"ids: {'sequential' if args.sequential_ids else 'random (like chatcmpl-... ids)'}; "
          f"timestamps over {args.spread_days:g} day(s)")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        run("SQLite", f"sqlite:///{workdir / 'ledger.db'}", lambda b: raw_sqlite(workdir / "raw.db", b), args, data, workdir)
        if args.postgres:
            schema, url = postgres_schema_url(args.postgres)
            try:
                run("PostgreSQL", url, lambda b: raw_postgres(args.postgres, b), args, data, workdir)
            finally:
                drop_schema(args.postgres, schema)


if __name__ == "__main__":
    main()
