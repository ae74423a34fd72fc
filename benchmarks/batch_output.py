"""Pull a 1 GB together.ai batch output file through the fake together server: size, time, peak memory.

    python benchmarks/batch_output.py [--size-mb 1024] [--keep DIR] [--no-tracemalloc]

Writes a batch output JSONL of about `--size-mb` (responses of three models, one broken line in
every 100,000), serves it from the fake together server in a child process (so its memory is
not the puller's), and runs the `together_batches` pull on a fresh SQLite file in this process.
Prints the file's size, the pull's time and throughput, the puller's peak RSS (sampled every
20 ms from /proc, and its growth over the RSS before the pull), then, in a second pull of the
same file on a fresh database, the peak of Python allocations traced by tracemalloc (which
slows the pull, so it is timed apart). Checks the ledger's tokens against the file's and says
so. Target: under 100 MB peak. Prints figures; asserts nothing."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import threading
import time
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fakes.together_api import batch_output_line  # noqa: E402

MODELS = ["meta-llama/Llama-3.3-70B-Instruct-Turbo", "deepseek-ai/DeepSeek-V3", "Qwen/Qwen2.5-72B-Instruct-Turbo"]
KEY = "bench-key"
FINISHED = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=2)
BROKEN_EVERY = 100_000


def write_output(path: Path, size: int) -> dict[str, list[int]]:
    """A batch output file of about `size` bytes; returns prompt, completion and line counts per model."""
    expected = {m: [0, 0, 0] for m in MODELS}
    created = int(FINISHED.timestamp())
    templates = [json.dumps(batch_output_line("@ID@", m, 111111, 22222, created)) for m in MODELS]
    for template in templates:
        if not all(template.count(mark) == 1 for mark in ("@ID@", "111111", "22222", "133333")):
            raise SystemExit("the line template is ambiguous; change the marker numbers")
    written = n = 0
    with path.open("w", encoding="utf-8") as handle:
        batch = []
        while written < size:
            if n and n % BROKEN_EVERY == 0:
                line = '{"custom_id": "cut short", "response": {"status_code": 200, "bo'
            else:
                model = n % len(MODELS)
                prompt, completion = 100 + n % 5000, 10 + n % 700
                line = (templates[model].replace("@ID@", f"req-{n:09d}").replace("111111", str(prompt))
                        .replace("22222", str(completion)).replace("133333", str(prompt + completion)))
                sums = expected[MODELS[model]]
                sums[0] += prompt
                sums[1] += completion
                sums[2] += 1
            batch.append(line)
            written += len(line) + 1
            n += 1
            if len(batch) >= 10_000:
                handle.write("\n".join(batch) + "\n")
                batch = []
        if batch:
            handle.write("\n".join(batch) + "\n")
    return expected


def serve(path: str, ready: Any, stop: Any) -> None:
    """The fake together server in a child process, listing one finished batch job with `path` as its output."""
    from tests.fakes.together_api import BatchJob, FakeTogether

    with FakeTogether(api_key=KEY) as fake:
        output = fake.add_file(Path(path))
        fake.batches = [BatchJob("batch-bench", output_file_id=output.id, model_id=MODELS[0], completed_at=FINISHED)]
        ready.send(fake.url)
        stop.wait()


class RssSampler(threading.Thread):
    """Peak resident memory of this process, sampled from /proc/self/status."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = self.now()
        self.running = True

    @staticmethod
    def now() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.now())
            time.sleep(0.02)


def pull_once(url: str, workdir: Path, name: str, trace: bool) -> tuple[float, int, int, int, Any, dict[str, list[int]]]:
    """(seconds, RSS before, peak RSS, traced peak, pull outcome, ledger sums per model) of one pull."""
    import os

    from db.engine import make_engine, make_sessionmaker
    from db.schema import upgrade
    from db.totals import totals
    from jobs.config.catalog import build_catalog
    from jobs.config.context import Context
    from jobs.config.sections import Source
    from jobs.config.settings import Settings
    from jobs.usage.pull import pull_one

    database = f"sqlite:///{workdir / (name + '.db')}"
    upgrade(database)
    engine = make_engine(database)
    sessions = make_sessionmaker(engine)
    os.environ["BENCH_TOGETHER_KEY"] = KEY
    source = Source(name="batches", kind="together_batches", base_url=url, api_key_env="BENCH_TOGETHER_KEY",
                    timeout_seconds=60)
    settings = Settings(sources=[source])
    context = Context(settings, engine, sessions, build_catalog(settings))
    sampler = RssSampler()
    before = sampler.now()
    sampler.start()
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    outcome = pull_one(context, source, datetime.now(timezone.utc))
    elapsed = time.perf_counter() - started
    traced = tracemalloc.get_traced_memory()[1] if trace else 0
    if trace:
        tracemalloc.stop()
    sampler.running = False
    sampler.join()
    with sessions() as session:
        found = {g.key: [g.input_tokens, g.output_tokens, g.requests] for g in totals(session, None, None, "model")}
    engine.dispose()
    return elapsed, before, sampler.peak, traced, outcome, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--keep", type=Path, help="write the file and databases here and keep them")
    parser.add_argument("--no-tracemalloc", action="store_true", help="skip the second, traced pull")
    args = parser.parse_args()

    workdir = args.keep or Path(tempfile.mkdtemp(prefix="bench-batch-"))
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "batch_output.jsonl"
    started = time.perf_counter()
    expected = write_output(path, args.size_mb * 1024 * 1024)
    size = path.stat().st_size
    print(f"batch output file: {size / 1e6:,.1f} MB ({size:,} bytes), "
          f"{sum(s[2] for s in expected.values()):,} responses of {len(MODELS)} models, "
          f"written in {time.perf_counter() - started:.1f} s")

    context = multiprocessing.get_context("spawn")
    ready_recv, ready_send = context.Pipe(duplex=False)
    stop = context.Event()
    server = context.Process(target=serve, args=(str(path), ready_send, stop), daemon=True)
    server.start()
    try:
        url = ready_recv.recv()
        runs = [("plain", False)] + ([] if args.no_tracemalloc else [("traced", True)])
        for name, trace in runs:
            elapsed, before, peak, traced, outcome, found = pull_once(url, workdir, name, trace)
            status = "ok" if outcome.ok else f"FAILED: {outcome.error}"
            print(f"\npull ({name}): {status}")
            if outcome.result is not None:
                for note in outcome.result.notes:
                    print(f"  note: {note}")
            print(f"  time: {elapsed:.1f} s, {size / 1e6 / elapsed:,.1f} MB/s")
            print(f"  RSS: {before / 1e6:,.1f} MB before the pull, peak {peak / 1e6:,.1f} MB during it "
                  f"(+{max(0, peak - before) / 1e6:,.1f} MB)")
            if trace:
                print(f"  tracemalloc peak of the pull's Python allocations: {traced / 1e6:,.1f} MB")
            matches = {m: found.get(m) == sums for m, sums in expected.items()}
            print("  ledger tokens and requests per model match the file: "
                  + ("yes" if all(matches.values()) else f"NO {matches} ledger={found} file={expected}"))
    finally:
        stop.set()
        server.join(timeout=10)
        if args.keep is None:
            for item in workdir.iterdir():
                item.unlink()
            workdir.rmdir()
    print("\nTarget: peak under 100 MB. (Figures on a shared machine vary with the others' load.)")


if __name__ == "__main__":
    main()
