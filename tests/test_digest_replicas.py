"""Two real `serve` processes on one database, back after missing the digest's hour: the
missed digest is posted once, marked late, with its chart; a restart posts nothing new."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from db.engine import make_engine, make_sessionmaker
from tests.buckets import add_buckets
from tests.fakes.slack_api import FakeSlack
from tests.harness import BOT_TOKEN, SIGNING_SECRET
from tests.processes import ServeProcess, wait_for_loop_passes, wait_until
from tests.test_digest import MODEL, bucket, earlier_today

CHANNEL = "C0DIGEST"


def fill(database_url: str) -> None:
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    now = datetime.now(timezone.utc)
    add_buckets(sessions, [bucket(now - timedelta(days=n), Decimal(100 + n % 7)) for n in range(1, 40)])
    engine.dispose()


def digests(slack: FakeSlack) -> list[dict]:
    return [m for m in slack.messages if m["channel"] == CHANNEL]


def test_two_serve_processes_post_the_missed_digest_once_marked_late(database_url: str, slack: FakeSlack,
                                                                     tmp_path: Path) -> None:
    fill(database_url)
    zone, due = earlier_today()  # both were down at that hour, earlier on the same local day
    env = {"DATABASE_URL": database_url, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
           "SLACK_API_URL": slack.url, "DIGEST_CHANNEL": CHANNEL, "DIGEST_TIME": due.strftime("%H:%M"),
           "TZ": zone.key,
           "CATCH_UP_SECONDS": "0.5", "OUTBOX_INTERVAL_SECONDS": "0.3", "LOG_LEVEL": "INFO"}
    with ServeProcess(env, tmp_path) as first, ServeProcess(env, tmp_path) as second:
        assert wait_until(lambda: len(slack.calls_to("files.completeUploadExternal")) >= 1, timeout=60), \
            first.log()[-3000:] + second.log()[-3000:]
        assert wait_for_loop_passes(first, second)  # time for a second post
        assert first.stop() == 0 and second.stop() == 0
    [posted] = digests(slack)
    assert "(late)" in posted["text"] and posted["blocks"][0]["text"]["text"].endswith("(late)")
    assert len(slack.calls_to("chat.postMessage")) == 1
    assert len(slack.calls_to("files.getUploadURLExternal")) == 1
    [uploaded] = slack.files.values()
    assert uploaded.completed and uploaded.channels == [CHANNEL] and uploaded.data.startswith(b"\x89PNG")
    assert MODEL in str(posted["blocks"])

    with ServeProcess(env, tmp_path) as restarted:  # back again: that day's digest is done
        assert wait_for_loop_passes(restarted)
        assert restarted.stop() == 0
    assert len(slack.calls_to("chat.postMessage")) == 1
