"""GET /v1/budgets/status against `budget-guard serve`, next to GET /healthz on the same server:
p50, p99 and the ratio at 8 clients, over a ledger of N models x M projects x D days of hourly
buckets with 50 budgets (the answer is read from what the last check stored, so the ledger's
size should not show). Also the seconds of that check, where the work moved to.

    python benchmarks/budget_status.py [--models 50 --projects 10 --days 60] [--requests 1000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.dataset import build  # noqa: E402
from benchmarks.quote_latency import percentile, run  # noqa: E402
from tests.harness import free_port  # noqa: E402

TOKEN = "tok-bench"


def config(path: Path) -> None:
    """50 budgets: per project (the token's among them), with and without a model, and totals."""
    lines = ['alert_channel = "C0ALERTS"']
    scopes = [f'{{ project = "project-{p}" }}' for p in range(10)] + ["{}"] * 5
    scopes += [f'{{ project = "project-{p % 10}", feature = "chat" }}' for p in range(35)]
    for i, scope in enumerate(scopes[:50]):
        lines.append(f'[[budgets]]\nname = "b{i:02d}"\namount = {50000 + 1000 * i}\nscope = {scope}\nforecast = false\n')
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--projects", type=int, default=10)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        started = time.perf_counter()
        rows = build(url, args.models, args.projects, args.days)
        print(f"ledger: {rows:,} hourly buckets ({args.models} models x {args.projects} projects x {args.days} days) "
              f"in {time.perf_counter() - started:.1f} s")
        config(Path(tmp) / "budget-guard.toml")
        env = {**os.environ, "DATABASE_URL": url, "BUDGET_GUARD_CONFIG": f"{tmp}/budget-guard.toml",
               "INGEST_TOKENS": f"project-1={TOKEN}", "LOG_LEVEL": "WARNING"}
        for key in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN"):
            env.pop(key, None)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "bot.cli", "check"], env=env, cwd=tmp, check=True,
                       stdout=subprocess.DEVNULL)
        check_seconds = time.perf_counter() - started
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                                 "--no-scheduler"], env=env, cwd=tmp, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.perf_counter() + 60
            while True:
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.perf_counter() > deadline:
                    raise SystemExit("serve did not start")
                time.sleep(0.05)

            def status(client: httpx.Client, i: int) -> httpx.Response:
                return client.get(f"{base}/v1/budgets/status", params={"project": "project-1", "feature": "chat"},
                                  headers={"Authorization": f"Bearer {TOKEN}"})

            def health(client: httpx.Client, i: int) -> httpx.Response:
                return client.get(f"{base}/healthz")

            answer = httpx.get(f"{base}/v1/budgets/status", params={"project": "project-1", "feature": "chat"},
                               headers={"Authorization": f"Bearer {TOKEN}"}).json()
            run(base, 50, args.clients, status)  # warm-up
            status_times = run(base, args.requests, args.clients, status)
            health_times = run(base, args.requests, args.clients, health)
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    s50, s99 = percentile(status_times, 50) * 1000, percentile(status_times, 99) * 1000
    h50, h99 = percentile(health_times, 50) * 1000, percentile(health_times, 99) * 1000
    print(f"machine: {os.cpu_count()} cores; {args.requests} requests per endpoint at {args.clients} clients")
    print(f"budget check that stored the figures: {check_seconds:.2f} s (a CLI process, start-up included)")
    print(f"status answer: {answer['decision']}, {len(answer['budgets'])} budgets apply")
    print(f"/v1/budgets/status  p50 {s50:7.2f} ms   p99 {s99:7.2f} ms")
    print(f"/healthz            p50 {h50:7.2f} ms   p99 {h99:7.2f} ms")
    print(f"ratio status ÷ healthz: p50 {s50 / h50:.2f}x   p99 {s99 / h99:.2f}x")


if __name__ == "__main__":
    main()
