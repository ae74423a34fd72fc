"""A budget check with 50 budgets over 200 models × 10 projects × 90 days of hourly buckets,
run by `budget-guard serve`'s scheduler: the check's seconds and serve's peak memory meanwhile.

    python benchmarks/budget_check.py [--reuse /tmp/big.db] [--postgres]

The first read of the daily rollups (which builds them after a bulk load) is timed and reported separately."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from zoneinfo import ZoneInfo  # noqa: E402

from sqlalchemy import delete  # noqa: E402

from benchmarks.dataset import build  # noqa: E402
from db.engine import make_engine, make_sessionmaker  # noqa: E402
from db.models import Alert, JobClaim, OutboxMessage  # noqa: E402
from db.rollups import daily_rows  # noqa: E402
from tests.fakes.slack_api import FakeSlack  # noqa: E402
from tests.harness import BOT_TOKEN, SIGNING_SECRET  # noqa: E402
from tests.processes import ServeProcess, wait_until  # noqa: E402

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def config(path: Path, models: list[str]) -> None:
    """50 budgets: per project, per model, per feature, and a few totals."""
    lines = ['alert_channel = "C0ALERTS"']
    scopes = [f'{{ project = "project-{p}" }}' for p in range(10)]
    scopes += [f'{{ model = "{m}" }}' for m in models[:30]]
    scopes += ['{ feature = "chat" }', '{ feature = "nightly-summaries" }', "{}"] * 3
    scopes += [f'{{ model = "{models[0]}", project = "project-1" }}']
    for i, scope in enumerate(scopes[:50]):
        lines.append(f'[[budgets]]\nname = "b{i:02d}"\namount = {50000 + 1000 * i}\nscope = {scope}\n')
    path.write_text("\n".join(lines))


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(url: str, workdir: Path) -> None:
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    now = datetime.now(timezone.utc)
    started = time.perf_counter()
    with sessions() as session:
        rows = daily_rows(session, now - timedelta(days=91), now + timedelta(hours=1), ZoneInfo("UTC"))
    rollup = time.perf_counter() - started
    models = sorted({r.model for r in rows})
    with sessions() as session, session.begin():  # a reused ledger: forget the last run's check and alerts
        for table in (JobClaim, Alert, OutboxMessage):
            session.execute(delete(table))
    engine.dispose()
    config(workdir / "budget-guard.toml", models)
    with FakeSlack(token=BOT_TOKEN) as slack:
        env = {"DATABASE_URL": url, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
               "SLACK_API_URL": slack.url, "BUDGET_GUARD_CONFIG": str(workdir / "budget-guard.toml"),
               "CHECK_CRON": "*/30 * * * *", "CATCH_UP_SECONDS": "2", "LOG_LEVEL": "INFO"}
        with ServeProcess(env, workdir) as serve:
            idle = peak_rss_mb(serve.process.pid)  # type: ignore[union-attr]
            assert wait_until(lambda: '"job": "check"' in serve.log(), timeout=300), serve.log()[-2000:]
            line = next(json.loads(l) for l in serve.log().splitlines() if '"job": "check"' in l)
            peak = peak_rss_mb(serve.process.pid)  # type: ignore[union-attr]
            wait_until(lambda: len(slack.calls_to("chat.postMessage")) > 0, timeout=30)
            serve.stop()
        alerts = len(slack.calls_to("chat.postMessage"))
    print(f"  first read of the daily rollups (builds them if a bulk load left them stale): {rollup:.1f} s "
          f"({len(rows):,} daily rows)")
    print(f"  budget check, 50 budgets, inside serve: {line['seconds']:.2f} s   (target < 5 s on SQLite)")
    print(f"  serve peak RSS: {peak:.0f} MB (idle before the check {idle:.0f} MB; target < 300 MB); alerts posted: {alerts}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reuse", help="an existing SQLite ledger built by benchmarks/dataset.py")
    parser.add_argument("--postgres", action="store_true", help="also run on PostgreSQL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        url = f"sqlite:///{args.reuse}" if args.reuse else f"sqlite:///{workdir / 'big.db'}"
        if not args.reuse:
            started = time.perf_counter()
            n = build(url, 200, 10, 90)
            print(f"built {n:,} buckets in {time.perf_counter() - started:.0f} s")
        print("SQLite:")
        run(url, workdir)
        if args.postgres:
            from sqlalchemy import create_engine, text

            schema = f"bench_{uuid.uuid4().hex[:8]}"
            admin = create_engine(PG)
            with admin.begin() as c:
                c.execute(text(f"CREATE SCHEMA {schema}"))
            try:
                pg_url = f"{PG}?options=-csearch_path%3D{schema}"
                started = time.perf_counter()
                n = build(pg_url, 200, 10, 90)
                print(f"built {n:,} buckets on PostgreSQL in {time.perf_counter() - started:.0f} s")
                print("PostgreSQL:")
                run(pg_url, workdir)
            finally:
                with admin.begin() as c:
                    c.execute(text(f"DROP SCHEMA {schema} CASCADE"))


if __name__ == "__main__":
    main()
