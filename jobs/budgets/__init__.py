"""Budgets and what guards them: specs (file and Slack), the check that turns spend, forecasts,
spikes, blind sources, price changes, runway and idle endpoints into alerts recorded once,
gateway status, guard actions (stopping an endpoint) and reconciliation against the bill.
Imports every `jobs` package above except `digest`."""
