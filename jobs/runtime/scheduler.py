"""APScheduler 3 in the `serve` process: cron triggers in the configured zone, every run claimed.

APScheduler 3 cannot share a job store between processes, so each replica schedules every
job and each run first claims (job, period): the period is the trigger's own fire time, the
same on every replica, so exactly one replica runs it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from slack_sdk import WebClient

from jobs.config.context import Context
from jobs.runtime import claims, outbox

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScheduledJob:
    """A job the scheduler runs: `run(context, period_start)` under a (name, period) claim."""

    name: str
    trigger: CronTrigger
    run: Callable[[Context, datetime], Any]


def last_fire_time(trigger: CronTrigger, now: datetime, lookback: timedelta = timedelta(days=2)) -> datetime | None:
    """The latest time at or before `now` that `trigger` fires: the period every replica agrees on.

    Looked for in windows growing back from `now`, so a trigger that fires every second or minute
    is not walked fire by fire over the whole lookback."""
    window = min(timedelta(minutes=1), lookback)
    while True:
        fire = trigger.get_next_fire_time(None, now - window)
        latest = None
        while fire is not None and fire <= now:
            latest = fire
            fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
        if latest is not None or window >= lookback:
            return latest
        window = min(window * 16, lookback)


def period_key(fire_time: datetime) -> str:
    """The period's name: its minute, with the second for a trigger that fires within minutes."""
    return fire_time.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ" if fire_time.second else "%Y-%m-%dT%H:%MZ")


def run_claimed(context: Context, job: ScheduledJob, *, now: datetime | None = None, metrics: Any = None) -> bool:
    """Run `job` for its current period if this process wins the claim; True if it ran."""
    now = now or datetime.now(timezone.utc)
    fire = last_fire_time(job.trigger, now.astimezone(context.settings.zone))
    if fire is None:
        return False
    period = period_key(fire)
    started = time.perf_counter()
    try:
        claims.run_once(context.sessions, job.name, period, lambda: job.run(context, fire), now=now,
                        lease=timedelta(seconds=context.settings.job_lease_seconds))
    except claims.AlreadyClaimed:
        return False
    except Exception:
        log.exception("job %s for %s failed", job.name, period, extra={"job": job.name, "period": period})
        if metrics is not None:
            metrics.count_job(job.name, "failed")
        return False
    if metrics is not None:
        metrics.count_job(job.name, "done")
    seconds = time.perf_counter() - started
    log.info("job %s ran for %s in %.2f s", job.name, period, seconds,
             extra={"job": job.name, "period": period, "seconds": round(seconds, 3)})
    return True


def outbox_client(context: Context) -> WebClient:
    """A Web API client with no automatic retries: the outbox decides when to try again."""
    settings = context.settings
    kwargs: dict[str, Any] = {"token": settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None,
                              "timeout": 8, "retry_handlers": []}
    if settings.slack_api_url:
        kwargs["base_url"] = settings.slack_api_url.rstrip("/") + "/"
    return WebClient(**kwargs)


class Scheduler:
    """Cron jobs (claimed per period), a catch-up tick for missed periods, and the outbox sender."""

    def __init__(self, context: Context, jobs: list[ScheduledJob], metrics: Any = None, *,
                 outbox_seconds: float | None = None, catch_up_seconds: float | None = None,
                 publish_home: Callable[[WebClient], int] | None = None) -> None:
        outbox_seconds = outbox_seconds or context.settings.outbox_interval_seconds
        catch_up_seconds = catch_up_seconds or context.settings.catch_up_seconds
        self.context = context
        self.metrics = metrics
        self.jobs = jobs
        self.client = outbox_client(context) if context.settings.slack_bot_token else None
        self.policy = outbox.OutboxPolicy.from_settings(context.settings, publish_home)
        self._stopping = threading.Event()
        self._scheduler = BackgroundScheduler(timezone=context.settings.zone,
                                              job_defaults={"coalesce": True, "max_instances": 1,
                                                            "misfire_grace_time": 300})
        for job in self.jobs:
            self._scheduler.add_job(run_claimed, job.trigger, args=[context, job], kwargs={"metrics": metrics},
                                    id=job.name, name=job.name)
        # A replica that was down at a job's time runs the missed period once when it is back.
        self._scheduler.add_job(self.catch_up, IntervalTrigger(seconds=catch_up_seconds), id="catch-up",
                                next_run_time=datetime.now(timezone.utc) + timedelta(seconds=2))
        if self.client is not None:
            self._scheduler.add_job(self.send_outbox, IntervalTrigger(seconds=outbox_seconds), id="outbox",
                                    next_run_time=datetime.now(timezone.utc) + timedelta(seconds=1))

    def start(self) -> "Scheduler":
        self._scheduler.start()
        log.info("scheduler started with %s", ", ".join(j.name for j in self.jobs) or "no jobs")
        return self

    def catch_up(self) -> None:
        for job in self.jobs:
            if self._stopping.is_set():
                return
            run_claimed(self.context, job, metrics=self.metrics)
        self._passed("catch-up")

    def send_outbox(self) -> None:
        if self.client is None or self._stopping.is_set():
            return
        outbox.send_pending(self.context.sessions, self.client,
                            lease=timedelta(seconds=self.context.settings.outbox_lease_seconds),
                            stopping=self._stopping.is_set, policy=self.policy)
        self._passed("outbox")

    def _passed(self, loop: str) -> None:
        if self.metrics is not None:
            self.metrics.count_loop(loop)

    def shutdown(self, wait: bool = True) -> None:
        """Finish running jobs, then give back whatever this process still holds."""
        self._stopping.set()
        self._scheduler.shutdown(wait=wait)
        claims.release_all(self.context.sessions)
        outbox.release(self.context.sessions)


def start_scheduler(context: Context, jobs: list[ScheduledJob], *, metrics: Any = None,
                    publish_home: Callable[[WebClient], int] | None = None, **timing: float) -> Scheduler:
    return Scheduler(context, jobs, metrics, publish_home=publish_home, **timing).start()
