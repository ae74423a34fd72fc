"""The machinery that makes jobs run once and messages arrive once: APScheduler cron triggers,
(job, period) claims, the Slack outbox (sending, finding a post after a crash, the operator's
view and retry) with its error classes and Slack delivery dedupe, notices to the operator, and
the insert-once helper they record with. Imports `jobs.config` only; job functions are handed
to the scheduler."""
