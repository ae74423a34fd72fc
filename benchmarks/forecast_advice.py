"""Forecast for every model and batch advice over 200 models x 10 projects x 90 days of hourly
buckets (about 4.2M), on SQLite and PostgreSQL: seconds and peak memory. Prints; asserts nothing.

    python benchmarks/forecast_advice.py [--reuse /tmp/big.db] [--no-postgres] [--repeat 3]

`--reuse PATH` reads an SQLite ledger built by `benchmarks/dataset.py` (and builds it there when
missing, for next time). PostgreSQL gets a fresh schema, dropped afterwards. Each measurement
runs in a child process, so its peak RSS is its own:

- the one-time rollup build (what the first read after a bulk load pays) is reported apart;
- forecast (`jobs.forecast.month_end`, all models) and advice (`jobs.advice.batch.advise`), warm rollups, as
  the jobs run them, best and median of `--repeat` runs, with tracemalloc's peak for one run;
- `budget-guard forecast --json` and `budget-guard advise --json` end to end (start-up,
  schema check and catalog included)."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TARGET_SECONDS = 5.0  # forecast + advice on SQLite


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure_rollup(url: str) -> dict[str, float]:
    """Forget the built rollups, then time the build the first read does."""
    from sqlalchemy import delete, func, select

    from db.engine import make_engine, make_sessionmaker
    from db.rollups import DailyUsage, RollupZone, refresh_daily
    from jobs.config.settings import Settings

    settings = Settings(database_url=url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    with sessions() as session, session.begin():
        session.execute(delete(RollupZone))
    started = time.perf_counter()
    with sessions() as session, session.begin():
        days = refresh_daily(session, settings.zone)
    seconds = time.perf_counter() - started
    with sessions() as session:
        rows = session.scalar(select(func.count()).select_from(DailyUsage))
    engine.dispose()
    return {"seconds": seconds, "days": days, "daily_rows": rows or 0, "maxrss_mb": _maxrss_mb()}


def measure_jobs(url: str, repeat: int) -> dict[str, object]:
    """Forecast for all models, then advice, as the jobs run them; rollups already built."""
    from jobs.advice.batch import advise
    from jobs.config.context import Context
    from jobs.config.settings import Settings
    from jobs.forecast.month_end import forecast_month_end

    started = time.perf_counter()
    context = Context.open(Settings(database_url=url))
    open_seconds = time.perf_counter() - started
    now = datetime.now(timezone.utc)

    def once() -> tuple[float, float, int, int, str]:
        t0 = time.perf_counter()
        with context.sessions() as session:
            forecast = forecast_month_end(session, context.settings, context.catalog, by="model", now=now)
        t1 = time.perf_counter()
        with context.sessions() as session:
            advice = advise(session, context.settings, context.catalog, now=now)
        t2 = time.perf_counter()
        assert forecast is not None
        return t1 - t0, t2 - t1, len(forecast.groups), len(advice.candidates), str(advice.total_saving)

    runs = [once() for _ in range(repeat)]
    tracemalloc.start()
    once()
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    context.close()
    forecast_s = [r[0] for r in runs]
    advice_s = [r[1] for r in runs]
    totals = [r[0] + r[1] for r in runs]
    return {
        "context_open_s": open_seconds,
        "forecast_s": {"best": min(forecast_s), "median": statistics.median(forecast_s)},
        "advice_s": {"best": min(advice_s), "median": statistics.median(advice_s)},
        "total_s": {"best": min(totals), "median": statistics.median(totals), "first": totals[0]},
        "models": runs[0][2],
        "candidates": runs[0][3],
        "total_saving": runs[0][4],
        "traced_peak_mb": traced_peak / 2**20,
        "maxrss_mb": _maxrss_mb(),
    }


def measure_cli(url: str) -> dict[str, float]:
    """`budget-guard forecast --json` and `advise --json` end to end, output discarded."""
    from bot.cli import main

    os.environ["DATABASE_URL"] = url
    seconds = {}
    for name, argv in (("forecast", ["forecast", "--json"]), ("advise", ["advise", "--json"])):
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
        seconds[name] = time.perf_counter() - started
        seconds[f"{name}_exit"] = code
    seconds["maxrss_mb"] = _maxrss_mb()
    return seconds


def child(kind: str, url: str, repeat: int) -> dict:
    """Run one measurement in a fresh interpreter; its figures come back as JSON."""
    with tempfile.TemporaryDirectory() as cwd:  # no stray budget-guard.toml is read
        env = {k: v for k, v in os.environ.items() if k not in ("BUDGET_GUARD_CONFIG", "TZ", "DATABASE_URL")}
        done = subprocess.run([sys.executable, __file__, "--child", kind, "--url", url, "--repeat", str(repeat)],
                              cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{kind} measurement failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(label: str, url: str, repeat: int) -> None:
    rollup = child("rollup", url, repeat)
    jobs = child("jobs", url, repeat)
    cli = child("cli", url, repeat)
    target = f"   (target < {TARGET_SECONDS:.0f} s)" if label == "SQLite" else ""
    print(f"{label}:")
    print(f"  one-time rollup build: {rollup['seconds']:.1f} s ({rollup['days']} days, "
          f"{rollup['daily_rows']:,} daily rows; peak RSS {rollup['maxrss_mb']:.0f} MB)")
    print(f"  forecast, all {jobs['models']} models:  best {jobs['forecast_s']['best']:.2f} s, "
          f"median {jobs['forecast_s']['median']:.2f} s")
    print(f"  batch advice ({jobs['candidates']} candidates, ${float(jobs['total_saving']):,.2f}/month): "
          f"best {jobs['advice_s']['best']:.2f} s, median {jobs['advice_s']['median']:.2f} s")
    print(f"  forecast + advice: best {jobs['total_s']['best']:.2f} s, median {jobs['total_s']['median']:.2f} s, "
          f"first {jobs['total_s']['first']:.2f} s{target}")
    print(f"  memory: tracemalloc peak {jobs['traced_peak_mb']:.0f} MB during forecast + advice; "
          f"process peak RSS {jobs['maxrss_mb']:.0f} MB (catalog and imports included)")
    print(f"  context open (catalog load): {jobs['context_open_s']:.2f} s")
    print(f"  end to end: `budget-guard forecast --json` {cli['forecast']:.2f} s (exit {cli['forecast_exit']}), "
          f"`budget-guard advise --json` {cli['advise']:.2f} s (exit {cli['advise_exit']}); "
          f"peak RSS {cli['maxrss_mb']:.0f} MB")


def build_ledger(url: str, models: int, projects: int, days: int) -> None:
    from benchmarks.dataset import build

    started = time.perf_counter()
    n = build(url, models, projects, days)
    print(f"built {n:,} buckets in {time.perf_counter() - started:.0f} s ({url.split('?')[0]})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reuse", metavar="PATH", help="SQLite ledger to reuse (built there if missing)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--pg-url", default=PG, help=f"PostgreSQL server (default {PG})")
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--projects", type=int, default=10)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", choices=("rollup", "jobs", "cli"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        figures = {"rollup": lambda: measure_rollup(args.url), "jobs": lambda: measure_jobs(args.url, args.repeat),
                   "cli": lambda: measure_cli(args.url)}[args.child]()
        print(json.dumps(figures))
        return

    shape = f"{args.models} models x {args.projects} projects x {args.days} days of hourly buckets"
    print(f"Forecast + batch advice over {shape}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.reuse) if args.reuse else Path(tmp) / "big.db"
        url = f"sqlite:///{path}"
        if path.exists():
            print(f"reusing {path}")
        else:
            build_ledger(url, args.models, args.projects, args.days)
        report("SQLite", url, args.repeat)

    if args.no_postgres:
        return
    from sqlalchemy import create_engine, text

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.pg_url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        pg_url = f"{args.pg_url}{'&' if '?' in args.pg_url else '?'}options=-csearch_path%3D{schema}"
        build_ledger(pg_url, args.models, args.projects, args.days)
        report("PostgreSQL", pg_url, args.repeat)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    main()
