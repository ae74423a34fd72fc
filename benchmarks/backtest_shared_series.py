"""Backtest the month-end forecaster on the shared Wikipedia series and print the table.

    python benchmarks/backtest_shared_series.py [FILE.csv]

Prints median APE per checkpoint and over all cases for the forecaster, run-rate and
trailing-7, the 80% interval coverage, and the wall time of the run.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs.backtest import format_table, load_series, run_backtest, summarize  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "forecast"
DEFAULT = SHARED / "wikipedia_R_daily.csv"


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    started = time.perf_counter()
    cases = run_backtest(load_series(path))
    elapsed = time.perf_counter() - started
    print(f"series: {path}")
    print(format_table(summarize(cases)))
    print(f"wall: {elapsed:.2f} s for {len(cases)} forecasts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
