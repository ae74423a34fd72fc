"""1,000 signed /costquote requests at 8 concurrent clients against `budget-guard serve`, and the
same against GET /healthz on the same server, in alternating rounds of one run: p50, p99 and the
ratio (target: /costquote's p99 within 1.5x of /healthz's). Every quote with a volume sizes its
dedicated line with the capacity model (pricing/capacity.py). Also: catalog load time and the
idle server's resident memory.

    python benchmarks/quote_latency.py [--requests 1000] [--clients 8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fakes.slack_api import FakeSlack  # noqa: E402
from tests.harness import BOT_TOKEN, SIGNING_SECRET, free_port, signed_headers, slash_command_body  # noqa: E402

QUOTES = [
    "maestro 3k/1k x 2M/mo",
    "llama-3.3-70b 4000 1000",
    "compare llama-3.3-70b deepseek-v3 gpt-oss-120b 3k/1k 100k/day",
    "qwen3-235b 2k/500 50M tokens/day dedicated h100",
    "deepseek-v3 3k/1k 100k/day dedicated h200",
    "llama-3.1-8b 2k/300 3M/day dedicated h100 util=60%",
]
ROUNDS = 4


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
    return ordered[index]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def catalog_load_seconds() -> float:
    code = "import time; t=time.perf_counter(); from pricing.catalog import load_catalog; load_catalog(); print(time.perf_counter()-t)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def run(url: str, n: int, clients: int, make_request) -> list[float]:  # type: ignore[no-untyped-def]
    def worker(count: int) -> list[float]:
        times = []
        with httpx.Client(timeout=10) as client:
            for i in range(count):
                start = time.perf_counter()
                response = make_request(client, i)
                times.append(time.perf_counter() - start)
                if response.status_code != 200:
                    raise SystemExit(f"unexpected {response.status_code}: {response.text[:200]}")
        return times

    per_client = [n // clients + (1 if i < n % clients else 0) for i in range(clients)]
    with ThreadPoolExecutor(clients) as pool:
        return [t for chunk in pool.map(worker, per_client) for t in chunk]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()

    load = catalog_load_seconds()
    with FakeSlack(token=BOT_TOKEN) as slack, tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = {**os.environ, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
               "SLACK_API_URL": slack.url, "DATABASE_URL": f"sqlite:///{tmp}/bench.db", "LOG_LEVEL": "WARNING"}
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                                 "--no-scheduler", "--upgrade-db"], env=env, cwd=tmp, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            while True:
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.perf_counter() - started > 30:
                    raise SystemExit("serve did not start")
                time.sleep(0.05)
            ready = time.perf_counter() - started
            time.sleep(1.0)
            idle_rss = rss_mb(proc.pid)

            def quote(client: httpx.Client, i: int) -> httpx.Response:
                body = slash_command_body(QUOTES[i % len(QUOTES)])
                return client.post(f"{base}/slack/events", content=body, headers=signed_headers(body))

            def health(client: httpx.Client, i: int) -> httpx.Response:
                return client.get(f"{base}/healthz")

            with httpx.Client(timeout=10) as client:  # each quote answers, sized by the capacity model
                for i, text in enumerate(QUOTES):
                    answer = quote(client, i).json()
                    blocks = json.dumps(answer.get("blocks", []), ensure_ascii=False)
                    sized = "GPUs needed" in blocks or "× H100" in blocks or "no estimate for" in blocks
                    if "Cost" not in blocks or (" x " in text or "/day" in text) != sized:
                        raise SystemExit(f"unexpected answer to {text!r}: {answer.get('text', '')[:200]}")
            run(base, 50, args.clients, quote)  # warm-up
            run(base, 50, args.clients, health)
            quote_times: list[float] = []
            health_times: list[float] = []
            for _ in range(ROUNDS):  # alternate, so a neighbour's load falls on both alike
                quote_times += run(base, args.requests // ROUNDS, args.clients, quote)
                health_times += run(base, args.requests // ROUNDS, args.clients, health)
            busy_rss = rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    q50, q99 = percentile(quote_times, 50) * 1000, percentile(quote_times, 99) * 1000
    h50, h99 = percentile(health_times, 50) * 1000, percentile(health_times, 99) * 1000
    print(f"machine: {os.cpu_count()} cores; {args.requests} requests per endpoint at {args.clients} clients")
    print(f"catalog load (fresh process): {load:.3f} s   (target < 1 s)")
    print(f"serve ready after: {ready:.2f} s; idle RSS: {idle_rss:.1f} MB (target < 150 MB); after load: {busy_rss:.1f} MB")
    print(f"/costquote  p50 {q50:7.2f} ms   p99 {q99:7.2f} ms   mean {statistics.mean(quote_times) * 1000:.2f} ms  (p99 target < 100 ms)")
    print(f"/healthz    p50 {h50:7.2f} ms   p99 {h99:7.2f} ms   mean {statistics.mean(health_times) * 1000:.2f} ms")
    print(f"ratio /costquote ÷ /healthz: p50 {q50 / h50:.2f}x   p99 {q99 / h99:.2f}x   (p99 target ≤ 1.5x)")


if __name__ == "__main__":
    main()
