"""Budgets and what guards them: specs (file and Slack), the rules that turn spend, forecasts,
spikes, blind sources, price changes, runway and idle endpoints into alert drafts, the check that
records them once, gateway status, guard actions (stopping an endpoint), reconciliation against
the bill, and the work behind `/budget` and `/budget credit` (`slack_commands`).
Imports every `jobs` package above except `digest`."""
