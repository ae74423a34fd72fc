"""Fuzz `POST /v1/usage`: 2,000 generated push bodies per engine, counting wrong outcomes.

    python benchmarks/fuzz_push.py [--bodies 2000] [--postgres URL] [--seed 15]

Starts `budget-guard serve --no-scheduler` on a free 127.0.0.1 port with a fresh database
(SQLite, and PostgreSQL with --postgres or TEST_DATABASE_URL) and posts bodies made of good
records and hostile ones: byte flips, truncations, NUL, lone surrogates, invalid UTF-8, JSON
nested 1,000 to 100,000 deep, counts of 1e13 and 1e400, 5,000-digit integers, buckets that
would overflow their money column, BOMs, CRLF, pretty-printed records, duplicate ids, random
bytes. After each push the ledger is read directly.

A wrong outcome: a status other than 200, 413 or 422 (a 5xx says "retry later" to a body
that will never pass); a 200 whose ledger change differs from what the body holds (read
with json.loads, first occurrence of each id); a 4xx that changed the ledger; a traceback
in the server's log; the server dying. Prints counts per engine; target 0."""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[1]
MODELS = ["arcee-ai/maestro-reasoning", "meta-llama/Llama-3.3-70B-Instruct-Turbo", "o1-pro", "nobody/unpriced"]
BOM = b"\xef\xbb\xbf"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def good_record(rng: random.Random, ids: str) -> dict:
    record = {"model": rng.choice(MODELS), "created": int(time.time()) - rng.randrange(60, 5 * 86400),
              "usage": {"prompt_tokens": rng.randrange(0, 10**5), "completion_tokens": rng.randrange(0, 10**4)}}
    if rng.random() < 0.8:
        record["id"] = f"{ids}-{rng.randrange(4)}"  # some repeat within a body
    for name in ("feature", "environment", "api_key"):
        if rng.random() < 0.3:
            record[name] = rng.choice(["search", "prod", "key-1", "é", "日本", "x" * 60])
    if rng.random() < 0.2:
        record["tags"] = rng.choice([{"team": "ml"}, "a=1,b=2", {"n": 3}])
    if rng.random() < 0.1:
        record["mode"] = "batch"
    return record


def hostile_line(rng: random.Random, ids: str) -> bytes:
    record = good_record(rng, ids)
    kind = rng.randrange(16)
    if kind == 0:
        depth = rng.choice([65, 1000, 100_000])
        return ("[" * depth + "]" * depth).encode()
    if kind == 1:
        record[rng.choice(["model", "feature", "id", "environment"])] = "a\udc80b"
    elif kind == 2:
        record[rng.choice(["model", "feature", "id", "api_key"])] = "a\x00b"
    elif kind == 3:
        record["usage"]["completion_tokens"] = rng.choice([10**13, -1, 1.5, "12", None, True, float("nan")])
    elif kind == 4:
        return json.dumps(record).replace('"completion_tokens": ', '"completion_tokens": 1e400, "x": ').encode()
    elif kind == 5:
        return json.dumps(record).replace('"prompt_tokens": ', '"prompt_tokens": ' + "9" * 5000 + ', "y": ').encode()
    elif kind == 6:
        record.update(model="o1-pro", usage={"prompt_tokens": 0, "completion_tokens": 10**12})  # $600M
    elif kind == 7:
        raw = bytearray(json.dumps(record).encode())
        raw[rng.randrange(len(raw))] = rng.randrange(256)
        return bytes(raw)
    elif kind == 8:
        raw = json.dumps(record).encode()
        return raw[: rng.randrange(1, len(raw))]
    elif kind == 9:
        return b"\xff\xfe" + json.dumps(record).encode()
    elif kind == 10:
        record["created"] = rng.choice([10**13, -5, "yesterday", 1e300, int(time.time()) + 3 * 86400])
    elif kind == 11:
        record["model"] = "m" * rng.choice([201, 10_000])
    elif kind == 12:
        record["tags"] = {"k": "v,w"}
    elif kind == 13:
        return json.dumps([record]).encode()
    elif kind == 14:
        return rng.choice([b"null", b"{}", b"[]", b'"x"', b"{", b"\x00\x00", BOM + b"{}"])
    else:
        record["usage"]["prompt_tokens_details"] = {"cached_tokens": record["usage"]["prompt_tokens"] + 1}
    return json.dumps(record).encode("utf-8", "surrogatepass")


def body_for(rng: random.Random) -> bytes:
    ids = uuid.UUID(int=rng.getrandbits(128)).hex
    shape = rng.randrange(10)
    if shape == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
    if shape == 1:
        return (BOM if rng.random() < 0.5 else b"") + json.dumps(good_record(rng, ids), indent=2).encode()
    lines = []
    for _ in range(rng.randrange(1, 12)):
        roll = rng.random()
        if roll < 0.7:
            lines.append(json.dumps(good_record(rng, ids)).encode())
        elif roll < 0.75:
            lines.append(b"")
        else:
            lines.append(hostile_line(rng, ids))
    if shape == 2 and len(lines) == 1 and rng.random() < 0.5:
        lines = [json.dumps(good_record(rng, ids)).encode() for _ in range(40_000)]  # > 3 MB: 413
    sep = b"\r\n" if rng.random() < 0.2 else b"\n"
    return (BOM if rng.random() < 0.2 else b"") + sep.join(lines)


def expected(body: bytes) -> tuple[int, int, int]:
    """Input, output tokens and records a 200 must add, read with json.loads (first occurrence of each id)."""
    text_body = body.removeprefix(BOM).decode("utf-8")
    try:
        whole = json.loads(text_body)
        objects = [whole] if isinstance(whole, dict) else None
    except ValueError:
        objects = None
    if objects is None:
        objects = [json.loads(line) for line in text_body.split("\n") if line.strip()]
    seen: set[str] = set()
    tin = tout = n = 0
    for obj in objects:
        if obj.get("id") is not None:
            if obj["id"] in seen:
                continue
            seen.add(obj["id"])
        usage = obj["usage"]
        tin += int(usage.get("prompt_tokens", usage.get("input_tokens")) or 0)
        tout += int(usage.get("completion_tokens", usage.get("output_tokens")) or 0)
        n += int(obj.get("requests", 1))
    return tin, tout, n


def ledger(engine) -> tuple[int, ...]:  # type: ignore[no-untyped-def]
    with engine.connect() as connection:
        tin, tout, requests, buckets = connection.execute(text(
            "SELECT COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), COALESCE(SUM(requests), 0), "
            "COUNT(*) FROM usage_buckets")).one()
        ids = connection.execute(text("SELECT COUNT(*) FROM seen_events")).scalar()
    return int(tin), int(tout), int(requests), int(buckets), int(ids)


def run(engine_name: str, database_url: str, bodies: list[bytes], workdir: Path) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "BUDGET_GUARD_", "INGEST_"))}
    port = free_port()
    env.update(DATABASE_URL=database_url, INGEST_TOKENS="fuzz=tok_fuzz", MAX_BODY_BYTES="3000000",
               PYTHONPATH=str(REPO), LOG_LEVEL="WARNING")
    subprocess.run([sys.executable, "-m", "bot.cli", "db", "upgrade"], env=env, cwd=workdir, check=True,
                   capture_output=True)
    log_path = workdir / f"serve-{engine_name}.log"
    with log_path.open("w") as log:
        server = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--no-scheduler", "--host", "127.0.0.1",
                                   "--port", str(port)], env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            raise SystemExit(f"{engine_name}: serve did not start: {log_path.read_text()[-2000:]}")
        time.sleep(0.1)
    engine = create_engine(database_url)
    counts: dict[str, int] = {}
    wrong: list[str] = []
    started = time.perf_counter()
    headers = {"Authorization": "Bearer tok_fuzz", "Content-Type": "application/x-ndjson"}
    with httpx.Client(timeout=60) as client:
        for n, body in enumerate(bodies):
            before = ledger(engine)
            try:
                response = client.post(f"{url}/v1/usage", content=body, headers=headers)
            except httpx.HTTPError as exc:
                wrong.append(f"body {n}: no answer ({type(exc).__name__})")
                continue
            after = ledger(engine)
            status = response.status_code
            counts[str(status)] = counts.get(str(status), 0) + 1
            if status == 200:
                tin, tout, records = expected(body)
                delta = (after[0] - before[0], after[1] - before[1], after[2] - before[2])
                if delta != (tin, tout, records) or response.json()["accepted"] != records:
                    wrong.append(f"body {n}: 200 but the ledger moved by {delta}, the body holds {(tin, tout, records)}")
            elif status in (413, 422):
                if after != before:
                    wrong.append(f"body {n}: {status} but the ledger changed")
            else:
                wrong.append(f"body {n}: HTTP {status}: {response.text[:120]}")
    seconds = time.perf_counter() - started
    alive = server.poll() is None
    server.terminate()
    server.wait(timeout=30)
    engine.dispose()
    log_text = log_path.read_text()
    if "Traceback" in log_text:
        wrong.append("the server logged a traceback")
    if not alive:
        wrong.append("the server died")
    shown = ", ".join(f"{k}: {v:,}" for k, v in sorted(counts.items()))
    print(f"{engine_name}: {len(bodies):,} bodies in {seconds:.1f} s ({shown}); wrong outcomes: {len(wrong)} (target 0)")
    for line in wrong[:10]:
        print(f"  {line}")
    return len(wrong)


def pg_schema(url: str) -> tuple[str, str]:
    import psycopg

    schema = f"fuzz_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in url else "?"
    return schema, f"{url}{sep}options=-csearch_path%3D{schema}"


def drop_pg_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as admin:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bodies", type=int, default=2000)
    parser.add_argument("--postgres", default=os.environ.get("TEST_DATABASE_URL"))
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    bodies = [body_for(rng) for _ in range(args.bodies)]
    print(f"{len(bodies):,} bodies, {sum(map(len, bodies)) / 1e6:.1f} MB; the machine may be shared")
    total = 0
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        total += run("SQLite", f"sqlite:///{workdir / 'fuzz.db'}", bodies, workdir)
        if args.postgres:
            schema, url = pg_schema(args.postgres)
            try:
                total += run("PostgreSQL", url, bodies, workdir)
            finally:
                drop_pg_schema(args.postgres, schema)
    print(f"wrong outcomes in all: {total} (target 0)")


if __name__ == "__main__":
    main()
