"""What budget-guard does, as plain functions over a session or a context; no Slack, no HTTP server.

A job (what the scheduler, a CLI command or a listener calls, owning its transactions) takes the
`Context` first, then its own arguments, options keyword-only; a query helper that runs inside its
caller's transaction takes that `session` (and what else it needs) instead.

One sub-package per domain, each importing only the ones listed before it (and `db`, `pricing`):

- `config`   settings, the deployment's catalog, the context a running process holds, the redactor
- `runtime`  the scheduler, exactly-once run claims, the Slack outbox and operator notices
- `usage`    usage in: validation, costing and bucketing, pushes, imports, OTLP, LiteLLM, pulls
             (`usage.sources`), price sync, repricing, the dedicated endpoints seen, the demo month
- `forecast` where spend is heading: the forecaster, its projection over the ledger, month-end,
             backtest, prepaid runway, and the scopes budgets and savings are about
- `advice`   what to change to spend less: serverless work that belongs on batch
- `budgets`  budget specs, the check that turns spend into alerts, gateway status, guard actions,
             reconciliation against the provider's bill
- `digest`   the daily digest and the App Home's overview
"""
