"""The daily digest over 200 models × 10 projects × 90 days of hourly buckets (4.3M rows):
the digest's build seconds on SQLite and PostgreSQL, the chart's share, peak memory; and the
App Home's build for comparison.

    python benchmarks/digest.py [--reuse /tmp/big.db] [--postgres] [--tz Europe/Berlin]

The one-time rollup build after a bulk load is timed and reported separately (a running
bot pays it once, then triggers keep the rollups fresh). Each measurement runs in a child
process of its own, so its peak RSS is the digest's, not the loader's. Prints figures;
asserts nothing."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def budgets(models: list[str]) -> list:  # type: ignore[type-arg]
    """50 budgets, as benchmarks/budget_check.py has them: per project, per model, per feature, totals."""
    from decimal import Decimal

    from jobs.config.sections import BudgetConfig

    scopes = [{"project": f"project-{p}"} for p in range(10)]
    scopes += [{"model": m} for m in models[:30]]
    scopes += [{"feature": "chat"}, {"feature": "nightly-summaries"}, {}] * 3
    scopes += [{"model": models[0], "project": "project-1"}]
    return [BudgetConfig(name=f"b{i:02d}", amount=Decimal(50000 + 1000 * i), scope=scope)
            for i, scope in enumerate(scopes[:50])]


def measure(url: str, tz: str) -> dict[str, float]:
    """In this (child) process: build, render and queue the digest twice, and the App Home once.
    Wall seconds, and this process's CPU seconds (what the wall would be on an idle machine,
    for SQLite, whose work all happens in this process)."""
    from sqlalchemy import select

    from bot.views.chart import spend_chart
    from bot.views.digest import digest_blocks, digest_text
    from bot.views.home import home_view
    from db.rollups import DailyUsage
    from jobs.advice.batch import advise
    from jobs.config.context import Context
    from jobs.config.settings import Settings
    from jobs.digest.daily import build_digest
    from jobs.digest.overview import build_overview
    from jobs.runtime.outbox import send_pending
    from jobs.runtime.scheduler import outbox_client
    from tests.fakes.slack_api import FakeSlack
    from tests.harness import BOT_TOKEN

    figures: dict[str, float] = {}
    with FakeSlack(token=BOT_TOKEN) as slack:
        probe = Context.open(Settings(database_url=url, tz=tz))
        with probe.sessions() as session:
            models = sorted(session.scalars(select(DailyUsage.model).distinct()))
        probe.close()
        settings = Settings(database_url=url, tz=tz, digest_channel="C0DIGEST", slack_bot_token=BOT_TOKEN,
                            slack_api_url=slack.url, alert_channel="C0ALERTS", budgets=budgets(models))
        context = Context.open(settings)
        figures["rss_before_mb"] = peak_rss_mb()
        for run in ("cold", "warm"):
            clocks = [(time.perf_counter(), time.process_time())]
            digest = build_digest(context)
            clocks.append((time.perf_counter(), time.process_time()))
            text, blocks = digest_text(digest), digest_blocks(digest)
            clocks.append((time.perf_counter(), time.process_time()))
            chart = spend_chart(digest)
            clocks.append((time.perf_counter(), time.process_time()))
            for kind, k in (("", 0), ("cpu_", 1)):
                figures[f"{run}_{kind}data"] = clocks[1][k] - clocks[0][k]
                figures[f"{run}_{kind}blocks"] = clocks[2][k] - clocks[1][k]
                figures[f"{run}_{kind}chart"] = clocks[3][k] - clocks[2][k]
                figures[f"{run}_{kind}total"] = clocks[3][k] - clocks[0][k]
        with context.sessions() as session:
            advice = advise(session, context.settings, context.catalog)
        figures["advice_agrees"] = float(
            [(c.model, c.who, c.monthly_saving) for c in advice.candidates]
            == [(s.model, s.who, s.monthly_saving) for s in digest.overview.savings])
        figures["suggestions"] = len(digest.overview.savings)
        figures["budgets"] = len(digest.overview.budgets)
        figures["blocks"] = len(blocks)
        figures["chart_kb"] = len(chart or b"") / 1024
        figures["models"] = len(digest.overview.models)
        figures["rss_after_digest_mb"] = peak_rss_mb()

        from jobs.digest.daily import queue_digest

        started = time.perf_counter()
        queue_digest(context, digest, key=f"digest:bench-{uuid.uuid4().hex[:6]}",
                     render=lambda d: (text, blocks, chart))
        report = send_pending(context.sessions, outbox_client(context))
        figures["queue_and_post"] = time.perf_counter() - started
        figures["posted"] = report.sent
        figures["upload_calls"] = len(slack.calls_to("files.getUploadURLExternal")) + \
            len(slack.calls_to("files.completeUploadExternal")) + \
            sum(1 for r in slack.requests if r.path.startswith("/upload/"))

        started = time.perf_counter()
        view = home_view(build_overview(context))
        figures["home"] = time.perf_counter() - started
        figures["home_blocks"] = len(view["blocks"])
        figures["rss_peak_mb"] = peak_rss_mb()
        context.close()
    return figures


def rollup(url: str, tz: str) -> tuple[float, int]:
    """The one-time build of the daily rollups after a bulk load."""
    from zoneinfo import ZoneInfo

    from db.engine import make_engine, make_sessionmaker
    from db.rollups import daily_rows

    engine = make_engine(url)
    now = datetime.now(timezone.utc)
    started = time.perf_counter()
    with make_sessionmaker(engine)() as session:
        rows = daily_rows(session, now - timedelta(days=95), now + timedelta(hours=1), ZoneInfo(tz))
    seconds = time.perf_counter() - started
    engine.dispose()
    return seconds, len(rows)


def report(engine: str, url: str, tz: str) -> None:
    seconds, rows = rollup(url, tz)
    child = subprocess.run([sys.executable, __file__, "--measure", url, "--tz", tz], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
    if child.returncode != 0:
        print(child.stderr[-3000:])
        raise SystemExit(f"{engine}: the measurement failed")
    f = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"{engine}:  (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    print(f"  first read of the daily rollups (builds them if a bulk load left them stale): {seconds:.1f} s "
          f"({rows:,} daily rows)")
    for run in ("cold", "warm"):
        for kind, label in (("", "wall"), ("cpu_", "CPU ")):
            total = f[f"{run}_{kind}total"]
            share = f[f"{run}_{kind}chart"] / total if total else 0
            print(f"  digest build, {run:<4} {label}: {total:.2f} s = data {f[f'{run}_{kind}data']:.2f} s"
                  f" + blocks {f[f'{run}_{kind}blocks'] * 1000:.0f} ms + chart {f[f'{run}_{kind}chart']:.2f} s"
                  f" (chart {share:.0%})")
    print("  (target < 5 s on SQLite; the cold run imports matplotlib; CPU is this process's alone: on PostgreSQL"
          " the server's work is not in it)")
    print(f"  {f['models']:.0f} models, {f['budgets']:.0f} budgets, {f['suggestions']:.0f} batch suggestions"
          f" (same as `advise`: {'yes' if f['advice_agrees'] else 'NO'}) → {f['blocks']:.0f} blocks;"
          f" chart {f['chart_kb']:.0f} KB")
    print(f"  queue + post to the fake Slack (chat.postMessage + the upload's {f['upload_calls']:.0f} calls): "
          f"{f['queue_and_post']:.2f} s, posted {f['posted']:.0f}")
    print(f"  App Home build: {f['home']:.2f} s, {f['home_blocks']:.0f} blocks")
    print(f"  peak RSS: {f['rss_after_digest_mb']:.0f} MB after two digests, {f['rss_peak_mb']:.0f} MB after the "
          f"App Home (process with the app's imports and an open context: {f['rss_before_mb']:.0f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reuse", help="an existing SQLite ledger built by benchmarks/dataset.py")
    parser.add_argument("--keep", help="build the SQLite ledger at this path and keep it (for --reuse)")
    parser.add_argument("--postgres", action="store_true", help="also run on PostgreSQL (a fresh schema, dropped after)")
    parser.add_argument("--tz", default="UTC")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.tz)))
        return

    from benchmarks.dataset import build

    with tempfile.TemporaryDirectory() as tmp:
        path = args.reuse or args.keep or str(Path(tmp) / "big.db")
        url = f"sqlite:///{path}"
        if not args.reuse:
            started = time.perf_counter()
            n = build(url, 200, 10, 90)
            print(f"built {n:,} buckets (200 models × 10 projects × 90 days) on SQLite in "
                  f"{time.perf_counter() - started:.0f} s")
        report("SQLite", url, args.tz)
        if args.postgres:
            from sqlalchemy import create_engine, text

            schema = f"bench_{uuid.uuid4().hex[:8]}"
            admin = create_engine(PG)
            with admin.begin() as c:
                c.execute(text(f'CREATE SCHEMA "{schema}"'))
            try:
                pg_url = f"{PG}?options=-csearch_path%3D{schema}"
                started = time.perf_counter()
                n = build(pg_url, 200, 10, 90)
                print(f"built {n:,} buckets on PostgreSQL in {time.perf_counter() - started:.0f} s")
                report("PostgreSQL", pg_url, args.tz)
            finally:
                with admin.begin() as c:
                    c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                admin.dispose()


if __name__ == "__main__":
    main()
