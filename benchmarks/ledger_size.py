"""How big the ledger gets: bucket rows and bytes per bucket row on SQLite.

    python benchmarks/ledger_size.py [--records 1000000] [--no-ids]

Imports `--records` usage records spread over 30 days, 20 models and 10 projects (one in
ten on batch) into a fresh SQLite file, then reads SQLite's `dbstat` to split the file by
table and index: bytes per bucket row (the table and its indexes), and what the dedupe ids
(`seen_events`) cost on top. Prints figures; asserts nothing."""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from import_csv import write_csv  # noqa: E402

from db.engine import make_engine, make_sessionmaker  # noqa: E402
from db.schema import upgrade  # noqa: E402
from jobs.config.catalog import build_catalog  # noqa: E402
from jobs.config.context import Context  # noqa: E402
from jobs.config.settings import Settings  # noqa: E402
from jobs.usage.imports import import_file  # noqa: E402


def table_bytes(path: Path) -> dict[str, int]:
    """Bytes on disk per table or index, from SQLite's dbstat virtual table."""
    with sqlite3.connect(path) as connection:
        return dict(connection.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--no-ids", action="store_true", help="records without ids (no dedupe rows)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        csv_path, db_path = Path(tmp) / "usage.csv", Path(tmp) / "ledger.db"
        write_csv(csv_path, args.records, ids=not args.no_ids)
        url = f"sqlite:///{db_path}"
        upgrade(url)
        engine = make_engine(url)
        started = time.perf_counter()
        result = import_file(Context(Settings(), engine, make_sessionmaker(engine), build_catalog(Settings())), csv_path)
        seconds = time.perf_counter() - started
        engine.dispose()
        with sqlite3.connect(db_path) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            connection.execute("VACUUM")
            rows = connection.execute("SELECT COUNT(*) FROM usage_buckets").fetchone()[0]
            ids = connection.execute("SELECT COUNT(*) FROM seen_events").fetchone()[0]
        sizes = table_bytes(db_path)
        bucket_bytes = sum(v for k, v in sizes.items() if k == "usage_buckets" or "usage_buckets" in k)
        seen_bytes = sum(v for k, v in sizes.items() if "seen_events" in k)
        print(f"{result.accepted:,} records over 30 days x 20 models x 10 projects imported in {seconds:.1f} s")
        print(f"bucket rows: {rows:,} ({result.accepted / max(rows, 1):.1f} records per row; "
              f"at most 720 hours x 20 x 10 x 2 modes = 288,000 keys)")
        print(f"usage_buckets with its indexes: {bucket_bytes / 1e6:.1f} MB, {bucket_bytes / max(rows, 1):.0f} bytes per bucket row")
        for name in sorted(k for k in sizes if "usage_buckets" in k):
            print(f"  {name}: {sizes[name] / max(rows, 1):.0f} bytes per row")
        if ids:
            print(f"seen_events (dedupe ids): {ids:,} rows, {seen_bytes / 1e6:.1f} MB, {seen_bytes / ids:.0f} bytes per id")
        print(f"whole file after VACUUM: {db_path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
