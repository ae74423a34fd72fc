"""The `budget-guard` command line: one sub-command per module in `bot.commands`."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each module in bot/commands/ exposes `register(subparsers)`, which adds its parser and
# sets `func=run`, where `run(args) -> int` is the exit code.
COMMAND_MODULES = (
    "quote",
    "serve",
    "db",
    "pull",
    "push",
    "usage",
    "import_",
    "reprice",
    "forecast",
    "backtest",
    "advise",
    "check",
    "digest",
    "demo",
    "runway",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="budget-guard",
        description="Quote, record, forecast and guard LLM API spend.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"bot.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"bot.commands.{name}":
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
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


if __name__ == "__main__":
    sys.exit(main())
