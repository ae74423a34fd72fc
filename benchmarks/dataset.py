"""A large ledger for benchmarks: N models × M projects × D days of hourly buckets.

    python benchmarks/dataset.py --url sqlite:///big.db [--models 200 --projects 10 --days 90]

Writes straight into `usage_buckets` (SQLite executemany, PostgreSQL COPY) after migrating
the schema, with a weekday pattern, a daily cycle and per-model scale, so forecasts and advice
have realistic work to do. Returns quickly enough to be rebuilt for each benchmark run."""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from db.models import to_nanos  # noqa: E402
from db.schema import upgrade  # noqa: E402
from pricing.catalog import load_catalog  # noqa: E402
from pricing.costs import token_cost  # noqa: E402

COLUMNS = ("bucket_start", "width", "source", "model", "mode", "project", "feature", "api_key", "environment", "tags",
           "input_tokens", "cached_input_tokens", "output_tokens", "requests", "uptime_minutes", "cost_nanos",
           "price_id")


def rows(models: int, projects: int, days: int, end: datetime, seed: int = 7):  # type: ignore[no-untyped-def]
    """Yield bucket tuples, oldest first; one model in ten runs a nightly batch-like job."""
    catalog = load_catalog()
    names = catalog.models("together")
    rng = random.Random(seed)
    chosen = [names[i % len(names)] + ("" if i < len(names) else f"-v{i // len(names)}") for i in range(models)]
    prices = {m: catalog.price_of(m.rsplit("-v", 1)[0] if m not in names else m) for m in chosen}
    scale = {m: rng.uniform(0.2, 5.0) for m in chosen}
    start = (end - timedelta(days=days)).replace(minute=0, second=0, microsecond=0)
    for hour in range(days * 24):
        at = start + timedelta(hours=hour)
        weekday = 0.55 if at.weekday() >= 5 else 1.0
        daily = 0.35 + 0.65 * max(0.0, math.sin((at.hour - 6) / 24 * 2 * math.pi))
        for index, model in enumerate(chosen):
            nightly = index % 10 == 0
            for p in range(projects):
                if nightly:
                    factor = 6.0 if at.hour in (1, 2, 3) else 0.05
                else:
                    factor = weekday * daily
                requests = max(0, int(scale[model] * factor * rng.uniform(20, 40)))
                if requests == 0:
                    continue
                input_tokens = requests * (3000 if nightly else 900)
                output_tokens = requests * (1500 if nightly else 250)
                price = prices[model]
                cost = to_nanos(token_cost(price, input_tokens, output_tokens)) if price else None
                yield (at.replace(tzinfo=None), "1h", "bench", model, "serverless", f"project-{p}",
                       "nightly-summaries" if nightly else "chat", f"key-{p}", "prod", "", input_tokens, 0,
                       output_tokens, requests, 0, cost, None)


def build(url: str, models: int, projects: int, days: int, end: datetime | None = None) -> int:
    """Create the schema at `url` and fill it; returns the number of rows written."""
    upgrade(url)
    end = end or datetime.now(timezone.utc)
    count = 0
    if url.startswith("sqlite"):
        import sqlite3

        connection = sqlite3.connect(url.removeprefix("sqlite:///"))
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=OFF")
        batch = []
        sql = f"INSERT INTO usage_buckets ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
        for row in rows(models, projects, days, end):
            batch.append((row[0].isoformat(sep=" ", timespec="microseconds"),) + row[1:])  # as SQLAlchemy stores it
            if len(batch) >= 50_000:
                connection.executemany(sql, batch)
                count += len(batch)
                batch.clear()
        connection.executemany(sql, batch)
        count += len(batch)
        connection.commit()
        connection.execute("ANALYZE")
        connection.close()
        return count
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as connection, connection.cursor() as cursor:
        with cursor.copy(f"COPY usage_buckets ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in rows(models, projects, days, end):
                copy.write_row(row)
                count += 1
        cursor.execute("ANALYZE usage_buckets")
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--projects", type=int, default=10)
    parser.add_argument("--days", type=int, default=90)
    args = parser.parse_args()
    started = time.perf_counter()
    n = build(args.url, args.models, args.projects, args.days)
    print(f"{n:,} buckets in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
