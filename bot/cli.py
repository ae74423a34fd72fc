"""The `budget-guard` command line: one sub-command per module in `bot.commands`.

Start-up is kept fast: building the parser imports every command module, and each imports
at its top only what its parser needs; what a command runs is imported when it runs."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from jobs.config.redaction import RedactedStream

# Each module in bot/commands/ exposes `register(subparsers)`, which adds its parser and
# sets `func=run`, where `run(args) -> int` is the exit code. A module that fails to import
# stops the command line (exit status 1) with its error: a command is never silently missing.
COMMAND_MODULES = (
    "quote",
    "serve",
    "db",
    "pull",
    "usage",
    "import_",
    "reprice",
    "forecast",
    "backtest",
    "advise",
    "check",
    "digest",
    "outbox",
    "demo",
    "runway",
    "reconcile",
)


class _Version(argparse.Action):
    """`--version`: the installed distribution's version, read only when asked for."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: object, values: object,
                 option_string: str | None = None) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("budget-guard")
        except PackageNotFoundError:  # run from a checkout that was never installed
            number = "unknown (not installed)"
        print(f"budget-guard {number}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="budget-guard",
        description="Quote, record, forecast and guard LLM API spend.",
    )
    parser.add_argument("--version", action=_Version)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"bot.commands.{name}")
        except ImportError as exc:  # a broken installation: said plainly, then the traceback
            print(f"budget-guard: the command module bot.commands.{name} does not import "
                  f"({type(exc).__name__}: {exc}); reinstall budget-guard", file=sys.stderr)
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. Exit codes: 0 done, 1 failed (a source, the database, a bug), 2 bad
    input (arguments, configuration, a refused file). Everything printed goes through the
    redactor, and no traceback reaches the terminal (unless LOG_LEVEL=DEBUG)."""
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = RedactedStream(stdout), RedactedStream(stderr)
    try:
        return _run(argv)
    finally:
        sys.stdout, sys.stderr = stdout, stderr


def _run(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `budget-guard usage | head`
        sys.stderr.close()
        return 0
    except Exception as exc:  # noqa: BLE001 - a bug or an outage: one line, not a traceback
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        print(f"budget-guard {args.command}: failed: {type(exc).__name__}" + (f": {first}" if first else ""),
              file=sys.stderr)
        if os.environ.get("LOG_LEVEL", "").upper() == "DEBUG":
            traceback.print_exc()
        else:
            print("  (set LOG_LEVEL=DEBUG to see where)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
