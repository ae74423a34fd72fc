"""Fuzz `budget-guard import`: 50 corrupt files per engine, counting wrong outcomes.

    python benchmarks/fuzz_import.py [--files 50] [--postgres URL] [--seed 15]

Each file is CSV or JSONL of good usage records (100 to 60,001 lines: past the 50,000-line
chunk) with corruptions at random lines: a lone surrogate, a NUL, bytes that are not UTF-8,
JSON nested 1,000 or 100,000 deep, a CSV field over 128 KB, a line over 1 MB, counts of 1e13,
a record that would overflow its bucket's money column (checked only when applied), a
truncated last line; and a few clean controls with a BOM and CRLF line ends. Every file goes
through `budget-guard import` as a subprocess, against one database that keeps what the
accepted files added.

A wrong outcome: a corrupt file imported, or refused with an exit code other than 2,
without naming a line, or leaving anything in the ledger; a clean file not imported whole;
a traceback. Prints counts per engine; target 0."""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from fuzz_push import drop_pg_schema, ledger, pg_schema  # noqa: E402

BOM = b"\xef\xbb\xbf"
MODELS = ["arcee-ai/maestro-reasoning", "meta-llama/Llama-3.3-70B-Instruct-Turbo", "nobody/unpriced"]
HEADER = "id,created,model,prompt_tokens,completion_tokens,feature\n"


def good_line(rng: random.Random, fmt: str, n: int, ids: str, end: bytes) -> bytes:
    created = int(time.time()) - rng.randrange(3600, 20 * 86400)
    model, tin, tout = rng.choice(MODELS), rng.randrange(0, 8000), rng.randrange(0, 2000)
    if fmt == "csv":
        return f"{ids}-{n},{created},{model},{tin},{tout},search".encode() + end
    return json.dumps({"id": f"{ids}-{n}", "created": created, "model": model,
                       "usage": {"prompt_tokens": tin, "completion_tokens": tout}}).encode() + end


def corrupt_line(rng: random.Random, fmt: str, n: int, ids: str) -> tuple[bytes, str]:
    created = int(time.time()) - 7200
    kind = rng.choice(["surrogate", "nul", "latin1", "deep", "huge field", "long line", "count", "overflow",
                       "negative", "future"])
    if fmt == "csv":
        cells = {"surrogate": f"{ids}-{n},{created},m\udc80,1,1,x".encode("utf-8", "surrogatepass"),
                 "nul": f"{ids}-{n},{created},gpt\x00-4o,1,1,x".encode(),
                 "latin1": f"{ids}-{n},{created},caf".encode() + b"\xe9,1,1,x",
                 "deep": f'{ids}-{n},{created},"{"[" * 1000}",1,1,x'.encode(),
                 "huge field": f'{ids}-{n},{created},"{"x" * 200_000}",1,1,x'.encode(),
                 "long line": f"{ids}-{n},{created},m,1,1,{'y,' * 600_000}".encode(),
                 "count": f"{ids}-{n},{created},m,10000000000000,1,x".encode(),
                 "overflow": f"{ids}-{n},{created},o1-pro,0,1000000000000,x".encode(),
                 "negative": f"{ids}-{n},{created},m,-1,1,x".encode(),
                 "future": f"{ids}-{n},{created + 5 * 86400},m,1,1,x".encode()}
        return cells[kind], kind
    record = {"id": f"{ids}-{n}", "created": created, "model": "m", "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
    if kind == "surrogate":
        record["model"] = "m\udc80"
    elif kind == "nul":
        record["feature"] = "a\x00b"
    elif kind == "latin1":
        return json.dumps(record).encode().replace(b'"m"', b'"caf\xe9"'), kind
    elif kind == "deep":
        depth = rng.choice([1000, 100_000])
        return ("[" * depth + "]" * depth).encode(), kind
    elif kind == "huge field":
        record["feature"] = "x" * 200_000
    elif kind == "long line":
        record["choices"] = ["z" * 1000] * 1100
    elif kind == "count":
        record["usage"]["completion_tokens"] = 10**13
    elif kind == "overflow":
        record.update(model="o1-pro", usage={"prompt_tokens": 0, "completion_tokens": 10**12})
    elif kind == "negative":
        record["usage"]["prompt_tokens"] = -1
    else:
        record["created"] = created + 5 * 86400
    return json.dumps(record).encode("utf-8", "surrogatepass"), kind


def make_file(rng: random.Random, directory: Path, index: int) -> tuple[Path, bool, int]:
    """A file, whether it is clean, and how many records it holds."""
    fmt = rng.choice(["csv", "jsonl"])
    lines = rng.choice([100, 2000, 5000, 60_001] if index % 10 == 0 else [100, 500, 2000, 5000])
    clean = index % 10 == 9
    ids = uuid.UUID(int=rng.getrandbits(128)).hex
    end = b"\r\n" if rng.random() < 0.3 else b"\n"
    body = [good_line(rng, fmt, n, ids, end) for n in range(lines)]
    if not clean:
        for _ in range(rng.choice([1, 1, 2, 5])):
            at = rng.randrange(lines - 1)  # not the last line: a cut could make a corrupt line pass
            line, _ = corrupt_line(rng, fmt, at, ids)
            body[at] = line + end
        if rng.random() < 0.2:
            body[-1] = body[-1][: len(body[-1]) // 2]  # a truncated last line
    head = (HEADER.encode() if fmt == "csv" else b"")
    path = directory / f"f{index}.{fmt}"
    path.write_bytes((BOM if rng.random() < 0.3 else b"") + head + b"".join(body))
    return path, clean, lines


def run(engine_name: str, database_url: str, files: list[tuple[Path, bool, int]], workdir: Path) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "BUDGET_GUARD_", "INGEST_"))}
    env.update(DATABASE_URL=database_url, PYTHONPATH=str(REPO))
    subprocess.run([sys.executable, "-m", "bot.cli", "db", "upgrade"], env=env, cwd=workdir, check=True,
                   capture_output=True)
    engine = create_engine(database_url)
    wrong: list[str] = []
    refused = imported = 0
    started = time.perf_counter()
    for path, clean, lines in files:
        before = ledger(engine)
        done = subprocess.run([sys.executable, "-m", "bot.cli", "import", str(path)], env=env, cwd=workdir,
                              capture_output=True, text=True, errors="replace")
        after = ledger(engine)
        output = done.stdout + done.stderr
        if "Traceback" in output:
            wrong.append(f"{path.name}: a traceback")
        if clean:
            if done.returncode != 0 or after[2] - before[2] != lines:
                wrong.append(f"{path.name} (clean, {lines:,} lines): exit {done.returncode}, "
                             f"{after[2] - before[2]:,} records added: {output.strip()[-200:]}")
            imported += 1
        else:
            if done.returncode != 2 or "line " not in done.stderr or after != before:
                wrong.append(f"{path.name} (corrupt): exit {done.returncode}, ledger "
                             f"{'unchanged' if after == before else 'changed'}: {output.strip()[-200:]}")
            refused += 1
    engine.dispose()
    seconds = time.perf_counter() - started
    print(f"{engine_name}: {len(files)} files ({refused} corrupt, {imported} clean) in {seconds:.1f} s; "
          f"wrong outcomes: {len(wrong)} (target 0)")
    for line in wrong[:10]:
        print(f"  {line}")
    return len(wrong)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=50, help="corrupt files; a clean control follows every nine")
    parser.add_argument("--postgres", default=os.environ.get("TEST_DATABASE_URL"))
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    total = 0
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        files: list[tuple[Path, bool, int]] = []
        index = 0
        while sum(1 for _, clean, _ in files if not clean) < args.files:
            files.append(make_file(rng, workdir, index))
            index += 1
        size = sum(p.stat().st_size for p, _, _ in files)
        print(f"{len(files)} files, {size / 1e6:.0f} MB; the machine may be shared")
        total += run("SQLite", f"sqlite:///{workdir / 'fuzz.db'}", files, workdir)
        if args.postgres:
            schema, url = pg_schema(args.postgres)
            try:
                total += run("PostgreSQL", url, files, workdir)
            finally:
                drop_pg_schema(args.postgres, schema)
    print(f"wrong outcomes in all: {total} (target 0)")


if __name__ == "__main__":
    main()
