"""The machinery that makes jobs run once and messages arrive once: APScheduler cron triggers,
(job, period) claims, the Slack outbox with its error classes and Slack delivery dedupe, and
notices to the operator. Imports `jobs.config` only; job functions are handed to the scheduler."""
