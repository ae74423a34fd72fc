"""`budget-guard digest [--dry-run] [--out DIR]`: the daily digest now.

Without `--dry-run` it goes through the same claim and outbox as the scheduled one (under a
period of its own, so it never stands in for, or blocks, the scheduled digest). With
`--dry-run` it prints the digest and writes its Block Kit JSON and chart PNG into `--out`,
posting nothing and queueing nothing."""

from __future__ import annotations

import argparse
import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from bot.commands.startup import StartupError, add_database_option, add_now_option, fail, now_from, open_context

if TYPE_CHECKING:
    from jobs.config.context import Context


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("digest", help="post the daily digest now (or --dry-run to see it)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the digest and write its Block Kit JSON and chart into --out; post nothing")
    parser.add_argument("--out", type=Path, default=Path("digest-out"), metavar="DIR",
                        help="where --dry-run writes digest.json and chart.png (default: ./digest-out)")
    add_now_option(parser)
    add_database_option(parser)
    parser.set_defaults(func=run)


def write_files(out: Path, text: str, blocks: list[dict], chart: bytes | None) -> list[Path]:
    """digest.json (Block Kit Builder's shape plus the fallback text) and chart.png, if there is one."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "digest.json"]
    written[0].write_text(json.dumps({"text": text, "blocks": blocks}, indent=2, ensure_ascii=False) + "\n",
                          encoding="utf-8")
    chart_path = out / "chart.png"
    if chart is not None:
        chart_path.write_bytes(chart)
        written.append(chart_path)
    elif chart_path.exists():
        chart_path.unlink()  # an old chart beside a new digest would mislead
    return written


def dry_run_digest(context: Context, now: datetime, out: Path) -> str:
    """Build the digest, write its files into `out`, and return it as the terminal shows it."""
    from bot.views.digest import digest_message, terminal_text
    from jobs.digest.daily import build_digest

    text, blocks, chart = digest_message(build_digest(context, now=now))
    written = write_files(out, text, blocks, chart)
    return terminal_text(text, blocks) + f"\nWrote {', '.join(str(p) for p in written)}; nothing was posted."


def run(args: argparse.Namespace) -> int:
    if args.now is not None and not args.dry_run:
        return fail(StartupError("--now needs --dry-run: a digest is posted as of now; --dry-run --now TIME shows "
                                 "the one of another day"))
    from sqlalchemy import select

    from bot.runtime import command_outbox_policy
    from bot.views.digest import digest_message
    from db.models import OutboxMessage
    from jobs.digest.daily import build_digest, digest_key, queue_digest
    from jobs.runtime import claims
    from jobs.runtime.outbox import send_pending
    from jobs.runtime.scheduler import outbox_client

    try:
        context = open_context(args)
    except StartupError as exc:
        return fail(exc)
    try:
        now = now_from(args)
        if args.dry_run:
            try:
                print(dry_run_digest(context, now, args.out))
            except OSError as exc:
                return fail(StartupError(f"--out {args.out}: cannot write there ({exc.strerror or exc})"))
            return 0
        channel = context.settings.digest_channel
        if not channel:
            return fail(StartupError("DIGEST_CHANNEL is not set: name the channel the digest goes to "
                                     "(or run with --dry-run to see it)"))
        period = f"manual-{now:%Y-%m-%dT%H:%M:%S.%fZ}-{uuid.uuid4().hex[:6]}"

        def post_now() -> bool:
            digest = build_digest(context, now=now)
            return queue_digest(context, digest, key=digest_key(period), render=digest_message, channel=channel,
                                now=now)

        claims.run_once(context.sessions, "digest", period, post_now)
        if not context.settings.slack_bot_token:
            print(f"Digest queued for {channel}; set SLACK_BOT_TOKEN to post it (it stays in the outbox).")
            return 0
        send_pending(context.sessions, outbox_client(context), policy=command_outbox_policy(context))
        with context.sessions() as session:
            row = session.scalar(select(OutboxMessage).where(OutboxMessage.dedupe_key == digest_key(period)))
        if row is not None and row.status in ("failed", "skipped"):
            print(f"Digest not posted to {channel}: {row.last_error}")
            return 1
        if row is None or row.status != "sent":
            reason = row.last_error if row is not None and row.last_error else "Slack did not take it yet"
            print(f"Digest queued for {channel} but not posted: {reason}. It stays in the outbox; "
                  "`budget-guard serve` retries it.")
            return 1
        print(f"Digest posted to {channel}.")
        return 0
    finally:
        context.close()
