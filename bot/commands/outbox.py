"""`budget-guard outbox [--json]`: the messages not sent yet (pending, uncertain, failed, skipped),
and `budget-guard outbox retry ID…|--failed`: send them again once what stopped them is fixed."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from bot.commands.startup import StartupError, add_database_option, fail, open_context

if TYPE_CHECKING:
    from db.models import OutboxMessage


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("outbox", help="messages not sent to Slack yet, and why; retry them")
    parser.add_argument("--json", action="store_true", help="a JSON object with every unsent message")
    add_database_option(parser)
    actions = parser.add_subparsers(dest="outbox_action", metavar="ACTION")
    again = actions.add_parser("retry", help="send failed or skipped messages again (after fixing the cause)")
    again.add_argument("ids", nargs="*", type=int, metavar="ID", help="outbox row IDs, as `budget-guard outbox` lists")
    again.add_argument("--failed", action="store_true", help="every failed and skipped message")
    add_database_option(again, on_a_sub_command=True)
    parser.set_defaults(func=run)


def state(row: OutboxMessage) -> str:
    """pending, uncertain (it may have reached Slack; looked for before it is sent again), sending,
    failed or skipped."""
    if row.status == "pending" and row.uncertain:
        return "uncertain"
    return row.status


def row_json(row: OutboxMessage) -> dict[str, Any]:
    return {"id": row.id, "key": row.dedupe_key, "kind": row.kind, "channel": row.channel, "state": state(row),
            "attempts": row.attempts, "created_at": row.created_at.isoformat(),
            "next_attempt_at": row.next_attempt_at.isoformat() if row.status == "pending" else None,
            "reason": row.failed_reason, "last_error": row.last_error, "posted_ts": row.ts,
            "chart_pending": row.attachment is not None and not row.file_posted}


def run(args: argparse.Namespace) -> int:
    from jobs.runtime.operator_notices import open_notices, plain
    from jobs.runtime.outbox_operator import unsent

    try:
        context = open_context(args)
    except StartupError as exc:
        return fail(exc)
    try:
        if args.outbox_action == "retry":
            return run_retry(context, args)
        with context.sessions() as session:
            rows = unsent(session)
            notices = [(n.id, n.delivered_to, plain(n.text)) for n in open_notices(session)]
            if args.json:
                print(json.dumps({"messages": [row_json(r) for r in rows],
                                  "notices": [{"id": i, "told_in": to, "text": t} for i, to, t in notices]}, indent=2))
                return 0
            print_table(rows)
        for notice_id, told_in, text in notices:
            print(f"\nOpen notice {notice_id} (told in {told_in or 'nothing yet'}): {text}")
        return 0
    finally:
        context.close()


def print_table(rows: list[OutboxMessage]) -> None:
    if not rows:
        print("The outbox is empty: every message was sent.")
        return
    print(f"{'ID':>5}  {'STATE':<9}  {'KIND':<7}  {'CHANNEL':<12}  {'TRIES':>5}  {'WRITTEN (UTC)':<16}  WHY")
    for row in rows:
        why = row.last_error or ("waiting for its turn" if row.status == "pending" else "")
        if row.status == "pending" and row.attempts:
            why += f" (next try {row.next_attempt_at:%H:%M:%S})"
        print(f"{row.id:>5}  {state(row):<9}  {row.kind[:7]:<7}  {row.channel[:12]:<12}  {row.attempts:>5}  "
              f"{row.created_at:%Y-%m-%d %H:%M}  {why}")


def run_retry(context: Any, args: argparse.Namespace) -> int:
    from jobs.runtime.outbox_operator import RetryRefused, failed_ids, retry

    if bool(args.ids) == bool(args.failed):
        return fail(StartupError("outbox retry: give the IDs to retry, or --failed for every failed one"))
    try:
        with context.sessions() as session, session.begin():
            ids = failed_ids(session) if args.failed else args.ids
            rows = retry(session, ids)
            done = [(r.id, r.kind, r.channel) for r in rows]
    except RetryRefused as exc:
        return fail(StartupError(f"outbox retry: {exc}"), 2)
    if not done:
        print("Nothing failed; nothing to retry.")
    for row_id, kind, channel in done:
        print(f"Row {row_id} ({kind} to {channel}) will be sent again on the outbox's next run "
              f"(`budget-guard serve` sends within OUTBOX_INTERVAL_SECONDS).")
    return 0
