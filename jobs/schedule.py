"""The jobs this deployment runs: every domain's scheduled job with its cron trigger in the
configured zone. The one module of `jobs` that sees every domain; `jobs.runtime.scheduler` runs
what it lists."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from apscheduler.triggers.cron import CronTrigger

from jobs.budgets.check import check_budgets
from jobs.budgets.reconcile import check_drift
from jobs.config.context import Context
from jobs.config.cron import cron_trigger
from jobs.digest.daily import digest_job
from jobs.runtime.scheduler import ScheduledJob
from jobs.usage.price_sync import sync_prices
from jobs.usage.pull import pull_sources


def scheduled_jobs(context: Context, renderers: dict[str, Callable[..., Any]] | None = None) -> list[ScheduledJob]:
    """The jobs this deployment runs, with their cron triggers in the configured zone.

    `renderers` turn job results into Slack messages (they live in `bot`, which jobs do not import)."""
    renderers = renderers or {}
    settings, zone = context.settings, context.settings.zone
    jobs: list[ScheduledJob] = []

    def cron(expression: str) -> CronTrigger:
        return cron_trigger(expression, zone)

    if settings.sources:
        jobs.append(ScheduledJob("pull", cron(settings.pull_cron),
                                 lambda ctx, _: pull_sources(ctx)))
    if settings.together_api_key:
        def price_sync(ctx: Context, _: datetime) -> None:
            sync_prices(ctx)
            ctx.reload_catalog()

        jobs.append(ScheduledJob("price-sync", cron(settings.price_sync_cron), price_sync))
    jobs.append(ScheduledJob("check", cron(settings.check_cron),
                             lambda ctx, fire: check_budgets(ctx, render=renderers.get("alert"))))
    if settings.alert_channel:
        jobs.append(ScheduledJob("reconcile", cron(settings.reconcile_cron),
                                 lambda ctx, fire: check_drift(ctx, now=fire, render=renderers.get("alert"))))
    if settings.digest_channel:
        t = settings.digest_time
        jobs.append(ScheduledJob("digest", CronTrigger(hour=t.hour, minute=t.minute, timezone=zone),
                                 lambda ctx, fire: digest_job(ctx, fire, render=renderers.get("digest"))))
    return jobs
