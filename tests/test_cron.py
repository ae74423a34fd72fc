"""Cron settings with seconds: six fields, the second first, fire within the minute, each firing a
period of its own; the latest fire time is the same as walking every fire over the lookback."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from jobs.config.cron import cron_trigger
from jobs.config.settings import Settings
from jobs.runtime.scheduler import last_fire_time, period_key


def walked(expression: str, zone: str, now: datetime, lookback: timedelta) -> datetime | None:
    """The latest fire at or before `now` found by stepping through every fire in the lookback."""
    trigger = cron_trigger(expression, zone)
    fire, latest = trigger.get_next_fire_time(None, now - lookback), None
    while fire is not None and fire <= now:
        latest, fire = fire, trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
    return latest


def test_six_fields_put_the_second_first_and_fire_within_the_minute() -> None:
    assert Settings(check_cron="*/2 * * * * *").check_cron == "*/2 * * * * *"
    trigger = cron_trigger("*/2 * * * * *", "UTC")
    start = datetime(2026, 11, 20, 12, 0, 0, 500_000, tzinfo=timezone.utc)
    first = trigger.get_next_fire_time(None, start)
    assert first == datetime(2026, 11, 20, 12, 0, 2, tzinfo=timezone.utc)
    assert trigger.get_next_fire_time(first, first + timedelta(seconds=1)) == first + timedelta(seconds=2)
    assert period_key(first) == "2026-11-20T12:00:02Z"
    assert period_key(datetime(2026, 11, 20, 12, 1, tzinfo=timezone.utc)) == "2026-11-20T12:01Z"  # as before


def test_a_wrong_six_field_cron_is_refused_like_a_wrong_five_field_one() -> None:
    with pytest.raises(ValueError, match="is not a cron expression"):
        Settings(check_cron="61 * * * * *")


@pytest.mark.parametrize(("expression", "lookback"), [
    ("* * * * *", timedelta(days=2)), ("*/30 * * * *", timedelta(days=2)), ("17 3 * * *", timedelta(days=2)),
    ("0 9 * * 1", timedelta(days=2)), ("0 0 1 * *", timedelta(days=2)), ("* * * * * *", timedelta(minutes=30)),
    ("*/7 * * * * *", timedelta(hours=1))])
@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "Asia/Tokyo"])
def test_the_latest_fire_time_is_the_one_a_walk_over_the_lookback_finds(expression: str, lookback: timedelta,
                                                                        zone: str) -> None:
    trigger, rng = cron_trigger(expression, zone), random.Random(f"{expression} {zone}")
    spring_forward = datetime(2026, 3, 29, 1, tzinfo=timezone.utc)  # Berlin's clocks skip 02:00-03:00
    # Across the skipped hour APScheduler 3 steps a seconds trigger through local times that do not
    # exist (walking or not), so only crontab lines are compared right at the change.
    instants = [] if len(expression.split()) == 6 else [spring_forward + timedelta(seconds=30),
                                                       spring_forward + timedelta(hours=1, seconds=5)]
    instants += [spring_forward + timedelta(seconds=rng.randrange(40 * 86400)) for _ in range(5)]
    for instant in instants:
        now = instant.astimezone(ZoneInfo(zone))
        assert last_fire_time(trigger, now, lookback) == walked(expression, zone, now, lookback)
