"""Import a 1,000,000-line CSV with `budget-guard import`: seconds and peak resident memory.

    python benchmarks/import_csv.py [--lines 1000000] [--postgres URL] [--keep DIR]

Writes a CSV of usage records (30 days, 20 models, 10 projects, random request ids), then
runs `budget-guard db upgrade` and `budget-guard import FILE` as a subprocess on a fresh
SQLite file (and on PostgreSQL with --postgres), timing the import and reading the child's
peak RSS. Target: under 250 MB. Prints figures; asserts nothing."""

from __future__ import annotations

import argparse
import csv
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODELS = [
    "meta-llama/Llama-3.3-70B-Instruct-Turbo", "deepseek-ai/DeepSeek-V3", "deepseek-ai/DeepSeek-R1",
    "Qwen/Qwen2.5-72B-Instruct-Turbo", "arcee-ai/maestro-reasoning",
] + [f"bench/model-{n}" for n in range(15)]
PROJECTS = [f"project-{n}" for n in range(10)]
HEADER = ["id", "created", "model", "prompt_tokens", "completion_tokens", "cached_tokens", "project", "feature", "mode"]


def write_csv(path: Path, lines: int, days: int = 30, ids: bool = True, seed: int = 5) -> None:
    """`lines` usage records spread evenly at random over the last `days` days."""
    rng = random.Random(seed)
    end = int(time.time()) - 3600
    start = end - days * 86400
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for n in range(lines):
            prompt = rng.randrange(50, 6000)
            writer.writerow([
                uuid.UUID(int=rng.getrandbits(128)).hex if ids else "",
                rng.randrange(start, end),
                MODELS[rng.randrange(len(MODELS))],
                prompt,
                rng.randrange(5, 1500),
                rng.randrange(0, prompt // 4 + 1),
                PROJECTS[rng.randrange(len(PROJECTS))],
                "",
                "batch" if n % 10 == 0 else "",
            ])


def budget_guard(*args: str, database_url: str, cwd: Path) -> tuple[float, int, str]:
    """Run the CLI in a child process: (seconds, peak RSS in MB, output)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "BUDGET_GUARD_", "INGEST_"))}
    env.update(DATABASE_URL=database_url, PYTHONPATH=str(REPO))
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KB on Linux: the largest child so far
    if done.returncode != 0:
        raise SystemExit(f"budget-guard {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed, max(peak, before) // 1024, (done.stdout + done.stderr).strip()


def pg_schema(url: str) -> tuple[str, str]:
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in url else "?"
    return schema, f"{url}{sep}options=-csearch_path%3D{schema}"


def drop_pg_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as admin:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def measure(engine: str, database_url: str, path: Path, workdir: Path, lines: int) -> None:
    budget_guard("db", "upgrade", database_url=database_url, cwd=workdir)
    seconds, peak_mb, output = budget_guard("import", str(path), database_url=database_url, cwd=workdir)
    print(f"{engine}: import of {lines:,} lines ({path.stat().st_size / 1e6:.0f} MB): {seconds:.1f} s, "
          f"{lines / seconds:,.0f} lines/s, peak RSS {peak_mb} MB (target < 250 MB)")
    print(f"  {output.splitlines()[-1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--postgres", default=None, help="also import into this PostgreSQL server")
    parser.add_argument("--keep", type=Path, default=None, help="write the CSV and database here and keep them")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / "usage.csv"
        started = time.perf_counter()
        write_csv(path, args.lines)
        print(f"wrote {path.name}: {args.lines:,} lines in {time.perf_counter() - started:.1f} s")
        measure("SQLite", f"sqlite:///{workdir / 'ledger.db'}", path, workdir, args.lines)
        if args.postgres:
            schema, url = pg_schema(args.postgres)
            try:
                measure("PostgreSQL", url, path, workdir, args.lines)
            finally:
                drop_pg_schema(args.postgres, schema)


if __name__ == "__main__":
    main()
