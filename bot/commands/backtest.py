"""`budget-guard backtest`: score the month-end forecaster on a daily series."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "backtest",
        help="score the month-end forecaster and two baselines on a date,value CSV",
        description=(
            "Every complete month with 60 days of history, checkpoints 5, 10, 15, 20, 25: "
            "median absolute percentage error of the forecaster, run-rate and trailing-7, "
            "and the coverage of the forecaster's 80% interval."
        ),
    )
    p.add_argument(
        "--series", required=True, metavar="FILE.csv", help="daily series, lines 'date,value'"
    )
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per case")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from jobs.forecast.backtest import SeriesError, format_table, load_series, run_backtest, summarize

    try:
        cases = run_backtest(load_series(args.series))
    except SeriesError as exc:
        where = f"{args.series}, line {exc.line}" if exc.line is not None else args.series
        print(f"budget-guard backtest: {where}: {exc.message}", file=sys.stderr)
        return 2
    if args.json:
        rows = [
            {
                "month": c.month,
                "checkpoint": c.checkpoint,
                "point": c.point,
                "low": c.low,
                "high": c.high,
                "actual": c.actual,
            }
            for c in cases
        ]
        print(json.dumps(rows, indent=1))
    else:
        print(format_table(summarize(cases)))
    return 0
