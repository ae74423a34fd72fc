"""Import a 1,000,000-line CSV with `budget-guard import`: seconds, peak resident memory, and on
PostgreSQL the ratio to a raw psycopg COPY of the same rows.

    python benchmarks/import_csv.py [--lines 1000000] [--postgres URL] [--keep DIR]

Writes a CSV of usage records (30 days, 20 models, 10 projects, random request ids), then
runs `budget-guard db upgrade` and `budget-guard import FILE` as a subprocess on a fresh
SQLite file (and on a fresh PostgreSQL schema with --postgres), timing the import and reading
that child's own peak RSS (target: under 250 MB).

With --postgres it also times, in the same run, a raw COPY of the same rows: "the same rows"
are the file's input records (one table row per CSV line, its nine columns typed as the file
holds them: text and bigint), not the buckets the import makes of them (about a fifth as many
rows). A child process reads the CSV with Python's csv module and writes each row with
psycopg's `cursor.copy().write_row` (binary) into a plain table (logged, no index, no
trigger) in its own schema. The ratio printed is raw-COPY seconds / import seconds (target: at
least 0.5); both are whole child processes, start-up included. For scale it also prints a COPY
of the file's bytes as they are (`COPY ... FROM STDIN (FORMAT CSV)`, parsed by the server), and
a COPY of the file's event ids alone into a table with a unique index, as `seen_events` is:
the part of the import's work that counting each id once costs, with nothing else.
The raw COPY validates nothing, counts no event id once and keeps no rollup: what the import
does beyond it is what the ratio measures. Prints figures; asserts nothing."""

from __future__ import annotations

import argparse
import csv
import os
import random
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


def child(args: list[str], *, env: dict[str, str], cwd: Path) -> tuple[float, int, str]:
    """Run `args` as a child process: (seconds, that child's own peak RSS in MB, its output)."""
    with tempfile.TemporaryFile("w+") as output:
        started = time.perf_counter()
        process = subprocess.Popen(args, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        text = output.read().strip()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(args[:4])} failed ({process.returncode}): {text[-2000:]}")
    return elapsed, usage.ru_maxrss // 1024, text  # ru_maxrss is in KB on Linux


def budget_guard(*args: str, database_url: str, cwd: Path) -> tuple[float, int, str]:
    """Run the CLI in a child process: (seconds, peak RSS in MB, output)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "BUDGET_GUARD_", "INGEST_"))}
    env.update(DATABASE_URL=database_url, PYTHONPATH=str(REPO))
    return child([sys.executable, "-m", "bot.cli", *args], env=env, cwd=cwd)


RAW_TABLE = """CREATE TABLE raw_records (id text, created bigint, model text, prompt_tokens bigint,
    completion_tokens bigint, cached_tokens bigint, project text, feature text, mode text)"""
RAW_TYPES = ["text", "int8", "text", "int8", "int8", "int8", "text", "text", "text"]


def raw_copy(url: str, path: Path, how: str) -> None:
    """(In a child process.) COPY the CSV's records into a fresh plain table: parsed in Python
    and written row by row (`rows`), or the file's bytes as they are (`bytes`)."""
    import psycopg

    with psycopg.connect(url) as connection:
        connection.execute("DROP TABLE IF EXISTS raw_records")
        connection.execute(RAW_TABLE)
        with connection.cursor() as cursor:
            if how == "ids":
                connection.execute("DROP TABLE IF EXISTS raw_ids")
                connection.execute('CREATE TABLE raw_ids (event_id text COLLATE "C" PRIMARY KEY, seen_at timestamp)')
                with cursor.copy("COPY raw_ids FROM STDIN") as copy, path.open(newline="", encoding="utf-8") as f:
                    reader = csv.reader(f)
                    next(reader)
                    for row in reader:
                        copy.write(f"{row[0]}\t2026-12-01 00:00:00\n")
                return
            if how == "bytes":
                with cursor.copy("COPY raw_records FROM STDIN (FORMAT CSV, HEADER)") as copy, path.open("rb") as f:
                    while block := f.read(1 << 20):
                        copy.write(block)
                return
            with cursor.copy("COPY raw_records FROM STDIN (FORMAT BINARY)") as copy, \
                    path.open(newline="", encoding="utf-8") as f:
                copy.set_types(RAW_TYPES)
                reader = csv.reader(f)
                next(reader)
                for row in reader:
                    copy.write_row([
                        (int(cell) if cell else None) if kind == "int8" else cell
                        for cell, kind in zip(row, RAW_TYPES)
                    ])


def measure_raw_copy(url: str, path: Path, workdir: Path, how: str) -> float:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    seconds, _, _ = child([sys.executable, str(Path(__file__).resolve()), "--raw-copy", how, "--postgres",
                           url.replace("postgresql+psycopg://", "postgresql://"), str(path)], env=env, cwd=workdir)
    return seconds


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


def measure(engine: str, database_url: str, path: Path, workdir: Path, lines: int) -> float:
    budget_guard("db", "upgrade", database_url=database_url, cwd=workdir)
    seconds, peak_mb, output = budget_guard("import", str(path), database_url=database_url, cwd=workdir)
    print(f"{engine}: import of {lines:,} lines ({path.stat().st_size / 1e6:.0f} MB): {seconds:.1f} s, "
          f"{lines / seconds:,.0f} lines/s, peak RSS {peak_mb} MB (target < 250 MB)")
    print(f"  {output.splitlines()[-1]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--postgres", default=None, help="also import into this PostgreSQL server")
    parser.add_argument("--keep", type=Path, default=None, help="write the CSV and database here and keep them")
    parser.add_argument("--raw-copy", choices=("rows", "bytes", "ids"), help=argparse.SUPPRESS)  # the child's part
    parser.add_argument("file", nargs="?", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_copy:
        raw_copy(args.postgres, args.file, args.raw_copy)
        return
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
                ours = measure("PostgreSQL", url, path, workdir, args.lines)
                rows = measure_raw_copy(url, path, workdir, "rows")
                as_is = measure_raw_copy(url, path, workdir, "bytes")
                ids = measure_raw_copy(url, path, workdir, "ids")
            finally:
                drop_pg_schema(args.postgres, schema)
            print(f"PostgreSQL: raw COPY of the same {args.lines:,} input records (one row per CSV line, parsed by "
                  f"Python's csv, psycopg write_row, plain table): {rows:.1f} s")
            print(f"  ratio raw COPY / import: {rows / ours:.2f} (target >= 0.5)")
            print(f"  for scale: COPY of the file's bytes as they are (the server parses the CSV): {as_is:.1f} s, "
                  f"ratio {as_is / ours:.2f}")
            print(f"  for scale: COPY of the file's {args.lines:,} event ids alone into a table with a unique index "
                  f"(what counting each id once costs, with nothing else): {ids:.1f} s")


if __name__ == "__main__":
    main()
