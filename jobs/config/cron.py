"""Cron expressions in settings: a crontab line (minute hour day month weekday), or six fields
with the second first, for jobs that run every few seconds (the replica tests' checks)."""

from __future__ import annotations

from datetime import tzinfo

from apscheduler.triggers.cron import CronTrigger


def cron_trigger(expression: str, zone: tzinfo | str) -> CronTrigger:
    """The trigger `expression` describes in `zone`; ValueError if it is not one."""
    fields = expression.split()
    if len(fields) == 6:
        second, minute, hour, day, month, weekday = fields
        return CronTrigger(second=second, minute=minute, hour=hour, day=day, month=month, day_of_week=weekday,
                           timezone=zone)
    return CronTrigger.from_crontab(expression, timezone=zone)
