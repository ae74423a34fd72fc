"""Load: 50 concurrent clients send signed /costquote requests and usage pushes to
`budget-guard serve` for 60 seconds, on SQLite and on PostgreSQL. Prints error counts and
p50/p99 per endpoint (targets: 0 errors, p99 under 300 ms on a 2-core machine).

    python benchmarks/load.py [--seconds 60] [--clients 50] [--no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fakes.slack_api import FakeSlack  # noqa: E402
from tests.harness import BOT_TOKEN, SIGNING_SECRET, signed_headers, slash_command_body  # noqa: E402
from tests.processes import ServeProcess  # noqa: E402

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
QUOTES = ["maestro 3k/1k x 2M/mo", "compare llama-3.3-70b deepseek-v3 gpt-oss-120b 3k/1k 100k/day",
          "qwen3-235b 2k/500 50M tokens/day dedicated h100", "llama-3.3-70b 4000 1000"]
MODELS = ["arcee-ai/maestro-reasoning", "meta-llama/Llama-3.3-70B-Instruct-Turbo", "deepseek-ai/DeepSeek-V3"]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))] if ordered else float("nan")


async def client_loop(index: int, base: str, deadline: float, times: dict[str, list[float]],
                      errors: dict[str, list[str]], pushed: list[int]) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        n = 0
        while time.monotonic() < deadline:
            n += 1
            if (index + n) % 2:
                endpoint = "/costquote"
                body = slash_command_body(QUOTES[n % len(QUOTES)])
                request = client.post(f"{base}/slack/events", content=body, headers=signed_headers(body))
            else:
                endpoint = "/v1/usage"
                records = [{"id": f"{uuid.uuid4()}", "created": int(time.time()) - 60, "model": MODELS[n % 3],
                            "usage": {"prompt_tokens": 2000, "completion_tokens": 500}, "feature": f"f{index % 5}"}
                           for _ in range(10)]
                request = client.post(f"{base}/v1/usage", content="\n".join(json.dumps(r) for r in records),
                                      headers={"Authorization": "Bearer tok_load"})
            started = time.perf_counter()
            try:
                response = await request
                elapsed = time.perf_counter() - started
                if response.status_code != 200:
                    errors[endpoint].append(f"HTTP {response.status_code}")
                elif endpoint == "/costquote" and '"blocks"' not in response.text:
                    errors[endpoint].append("answered without a quote")  # the error handler's apology
                else:
                    times[endpoint].append(elapsed)
                    if endpoint == "/v1/usage":
                        pushed.append(response.json()["accepted"])
            except httpx.HTTPError as exc:
                errors[endpoint].append(type(exc).__name__)


async def drive(base: str, seconds: float, clients: int) -> tuple[dict, dict, int]:
    times: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, list[str]] = defaultdict(list)
    pushed: list[int] = []
    deadline = time.monotonic() + seconds
    await asyncio.gather(*(client_loop(i, base, deadline, times, errors, pushed) for i in range(clients)))
    return times, errors, sum(pushed)


def run(label: str, url: str, workdir: Path, seconds: float, clients: int) -> None:
    with FakeSlack(token=BOT_TOKEN) as slack:
        # The scheduler runs as in production: the budget check every minute, the outbox sender.
        config = workdir / "budget-guard.toml"
        config.write_text('alert_channel = "C0ALERTS"\n[[budgets]]\nname = "load"\namount = 100\n')
        env = {"DATABASE_URL": url, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
               "SLACK_API_URL": slack.url, "INGEST_TOKENS": "load=tok_load", "LOG_LEVEL": "WARNING",
               "BUDGET_GUARD_CONFIG": str(config), "CHECK_CRON": "* * * * *"}
        with ServeProcess(env, workdir, "--upgrade-db") as serve:
            times, errors, records = asyncio.run(drive(serve.url, seconds, clients))
            serve.stop()
    print(f"{label}: {clients} clients for {seconds:.0f} s on {os.cpu_count()} CPUs, scheduler on; "
          f"{records:,} usage records accepted, {ledger_requests(url):,} requests in the ledger; "
          f"{len(slack.calls_to('chat.postMessage'))} alert(s) posted")
    for endpoint in ("/costquote", "/v1/usage"):
        t = times[endpoint]
        print(f"  {endpoint:11s} {len(t):6d} ok, {len(errors[endpoint])} errors"
              f"{' (' + ', '.join(sorted(set(errors[endpoint]))) + ')' if errors[endpoint] else ''};"
              f"  p50 {percentile(t, 50) * 1000:6.1f} ms  p99 {percentile(t, 99) * 1000:6.1f} ms"
              f"  ({len(t) / seconds:.0f}/s)")


def ledger_requests(url: str) -> int:
    """Requests the ledger holds after the run: equal to the records accepted, or usage was lost or doubled."""
    from sqlalchemy import func, select

    from db.engine import make_engine, make_sessionmaker
    from db.models import UsageBucket

    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as session:
            return int(session.scalar(select(func.coalesce(func.sum(UsageBucket.requests), 0))))
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        run("SQLite", f"sqlite:///{workdir / 'load.db'}", workdir, args.seconds, args.clients)
        if not args.no_postgres:
            from sqlalchemy import create_engine, text

            schema = f"load_{uuid.uuid4().hex[:8]}"
            admin = create_engine(PG)
            with admin.begin() as c:
                c.execute(text(f"CREATE SCHEMA {schema}"))
            try:
                run("PostgreSQL", f"{PG}?options=-csearch_path%3D{schema}", workdir, args.seconds, args.clients)
            finally:
                with admin.begin() as c:
                    c.execute(text(f"DROP SCHEMA {schema} CASCADE"))


if __name__ == "__main__":
    main()
