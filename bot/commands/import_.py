"""`budget-guard import FILE`: usage records from a CSV or JSONL file, checked whole before any is applied."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bot.commands.startup import StartupError, add_database_option, fail, open_context

CSV_FIELDS = (  # jobs.usage.imports.CSV_FIELDS, without importing the ledger to build the parser
    "id", "created", "timestamp", "model", "prompt_tokens", "completion_tokens", "cached_tokens", "requests",
    "mode", "project", "feature", "api_key", "environment", "tags",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import",
        help="import usage records from a CSV or JSONL file",
        description="A JSONL line is the record a push takes. CSV columns are named after the fields "
        f"({', '.join(CSV_FIELDS)}); --map renames them. A file with bad lines is refused whole "
        "unless --skip-bad names a file for them.",
    )
    parser.add_argument("file", type=Path)
    parser.add_argument("--format", choices=("csv", "jsonl"), help="default: from the file's extension")
    parser.add_argument(
        "--map", action="append", default=[], metavar="FIELD=COLUMN",
        help="read FIELD from CSV column COLUMN, e.g. --map prompt_tokens=tokens_in (repeatable)",
    )
    parser.add_argument("--project", help="the project of every record (overrides a project column)")
    parser.add_argument("--skip-bad", type=Path, metavar="FILE", help="apply the good lines; write the bad ones to FILE")
    add_database_option(parser)
    parser.set_defaults(func=run)


def parse_mapping(pairs: list[str]) -> dict[str, str]:
    """`FIELD=COLUMN` pairs as a dict; unknown fields are an error."""
    mapping = {}
    for pair in pairs:
        field, sep, column = pair.partition("=")
        if not sep or not field.strip() or not column.strip():
            raise StartupError(f"--map {pair!r}: expected FIELD=COLUMN, e.g. prompt_tokens=tokens_in")
        if field.strip() not in CSV_FIELDS:
            raise StartupError(f"--map {pair!r}: unknown field {field.strip()!r}; fields: {', '.join(CSV_FIELDS)}")
        mapping[field.strip()] = column.strip()
    return mapping


class ProgressBar:
    """A one-line bar on stderr, redrawn at most ten times a second."""

    def __init__(self) -> None:
        self._last = 0.0

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last < 0.1 and done < total:
            return
        self._last = now
        fraction = done / total if total else 1.0
        filled = int(fraction * 30)
        sys.stderr.write(f"\r{phase:<9} [{'#' * filled}{'.' * (30 - filled)}] {fraction:6.1%}")
        if done >= total and phase == "importing":
            sys.stderr.write("\n")
        sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    from jobs.usage.imports import file_format, import_file
    from jobs.usage.records import IngestRejected

    try:
        mapping = parse_mapping(args.map)
        if not args.file.is_file():
            raise StartupError(f"{args.file}: no such file")
        fmt = file_format(args.file, args.format)
        if mapping and fmt != "csv":
            raise StartupError("--map applies to CSV files; a JSONL line is a push record as it is")
        context = open_context(args)
    except (StartupError, ValueError) as exc:
        return fail(exc)
    progress = ProgressBar() if sys.stderr.isatty() else None
    try:
        result = import_file(
            context, args.file, fmt=fmt, columns=mapping, project=args.project,
            skip_bad=args.skip_bad, on_progress=progress,
        )
    except IngestRejected as exc:
        if progress:
            sys.stderr.write("\n")
        print(f"{args.file}: refused, nothing applied: {exc.total:,} bad line(s)", file=sys.stderr)
        for line, reason in exc.errors[:20]:
            print(f"  line {line}: {reason}", file=sys.stderr)
        if exc.total > 20:
            print(f"  ...and {exc.total - 20:,} more; --skip-bad FILE applies the good lines", file=sys.stderr)
        return 2
    finally:
        context.close()
    print(f"{args.file}: {result.accepted:,} record(s) imported, {result.duplicates:,} duplicate(s) skipped", end="")
    print(f", {result.bad:,} bad line(s) written to {args.skip_bad}" if result.bad else "")
    return 0
